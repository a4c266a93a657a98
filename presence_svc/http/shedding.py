"""Shedding before HTTP: while the requests gate is full, a request that arrives on an idle
keep-alive connection is answered with a canned 503 written straight on the transport,
before aiohttp parses it, routes it or makes a request object.

Refusing through aiohttp costs about 0.4 of a heartbeat (request object, routing, response
object, header serialisation, in Python). At three times the load a process can carry, two
thirds of the arrivals are refusals: at that price they take most of the CPU and the
admitted requests wait behind them, in the event loop, where the in-flight count does not
see them. Here a refusal is a scan of the bytes already read and one write.

Only the plain case is taken: whole HTTP/1.1 requests (one or several pipelined) that
exactly fill what was read, on a connection between requests (its handler waits for the
next one, or with the lean path on, has answered one and not yet looped back to wait), to a
gated ``/v1/`` route (not an event stream: they have a gate of their own), with a
``Content-Length`` body or none, and no ``Connection``, ``Transfer-Encoding``, ``Expect`` or
``Upgrade`` header (nor ``Origin`` when CORS is on: those answers carry CORS headers),
and every header line plain (``CRLF name: value``, no bare LF, fold or control byte).
Anything else goes to aiohttp as before, where ``edge`` refuses it past the gate with the
same answer. ``/healthz``, ``/readyz`` and ``/metrics`` are never refused.

``serve`` runs the app with :func:`run_app` (aiohttp's ``run_app`` with this protocol);
tests and embedders running the app through aiohttp's own runners get ``edge``'s refusal
alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Sequence

import aiohttp
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from presence_svc.http.admission import GATE, Gate
from presence_svc.http.lean import PLAIN_HEAD, Head, LeanPath, framing
from presence_svc.http.resources import SETTINGS

__all__ = ["SheddingRunner", "compatible", "lean_compatible", "requests_in", "run_app"]

log = logging.getLogger(__name__)

_HELD_MAX = 2**16
"""Bytes held behind a lean answer before the connection stops reading until it is sent."""

# A request line to a gated route (event streams have a gate of their own).
_LINE = re.compile(rb"(?:GET|POST|PUT|DELETE|PATCH) (/v1/[\x21-\x7e]*) HTTP/1\.1\r\n")
# The headers this scan must see: the length, those whose requests aiohttp must see
# (connection handling, bodies of unknown length, ``100-continue``, upgrades), and
# ``Origin`` (with CORS on, the answer carries CORS headers). One search of the head, in
# C: a refusal is a few microseconds, and this scan was most of its Python.
_HEADERS = re.compile(
    rb"\r\n(?:(content-length)|(origin)|connection|transfer-encoding|expect|upgrade):"
    rb"([^\r]*)",
    re.IGNORECASE,
)


def requests_in(data: bytes, cors: bool) -> int:
    """How many whole, plain requests to gated routes ``data`` holds, if it holds nothing
    else; else 0 (aiohttp takes it)."""
    count = 0
    at = 0
    size = len(data)
    while at < size:
        line = _LINE.match(data, at)
        if line is None or b"/events" in line.group(1):
            return 0
        head = line.end() - 2  # the head's lines each start with CRLF
        end = data.find(b"\r\n\r\n", head)
        if end < 0:
            return 0
        if PLAIN_HEAD.fullmatch(data, head, end) is None:
            return 0
        length = -1
        for is_length, is_origin, value in _HEADERS.findall(data, head, end):
            if is_length:
                value = value.strip()
                if length >= 0 or not value.isdigit() or len(value) > 18:
                    return 0  # several (aiohttp answers 400), none, or past int()'s 4 300 digits
                length = int(value)
            elif not is_origin or cors:
                return 0
        at = end + 4 + max(0, length)
        if at > size:
            return 0  # the body is not all here
        count += 1
    return count


class SheddingHandler(RequestHandler):
    """aiohttp's protocol, with the canned refusal and the heartbeat's lean answer
    (``lean``) in front of its parser.

    A request read but not yet at its handler is ``pending`` on the gate: under load one
    turn of the event loop reads hundreds of requests before any handler starts, and the
    in-flight count alone would let them all through to be refused the slow way."""

    __slots__ = (
        "_cors",
        "_gate",
        "_held",
        "_held_bytes",
        "_held_paused",
        "_lean",
        "_lean_task",
        "_owed",
        "_pending",
        "_started",
    )

    _gate: Gate
    _cors: bool
    _pending: bool
    _lean: LeanPath | None
    """The lean answers (``lean.ROUTES``), when the app allows them."""
    _lean_task: asyncio.Task[None] | None
    """A lean answer under way: what arrives meanwhile is held for aiohttp (``_held``)."""
    _held: list[bytes]
    _held_bytes: int
    _held_paused: bool
    _started: int
    """Requests whose handling began (aiohttp's handler task, or a lean answer): behind
    aiohttp's ``_request_count`` while a request it popped has not reached its handler."""
    _owed: int
    """Body bytes aiohttp's parser still expects of the last request given to it: 0 when it
    is between requests, so that a request that arrives whole may be answered here; -1
    once that is unknown (a head cut short), for the rest of the connection."""

    def data_received(self, data: bytes) -> None:
        if self._lean_task is not None:
            self._held.append(data)
            self._held_bytes += len(data)
            # as aiohttp stops reading past its queue: a client that pipelines (or does
            # not read its answers while the lean one drains) cannot grow this unbounded
            if self._held_bytes >= _HELD_MAX and not self._held_paused and self.transport:
                self._held_paused = True
                self.transport.pause_reading()
            return
        waiter = self._waiter
        if (
            not self._pending
            and not self._messages
            and self._payload_parser is None
            and (self._just_answered() if waiter is None else not waiter.done())
        ):  # the first bytes of a request on a connection between requests
            gate = self._gate
            if gate.open + gate.pending >= gate.limit or gate.shedding:
                if self._shed(data):
                    return
                # not sheddable here (e.g. a Content-Length of 19+ digits): aiohttp's
                # ``edge`` refuses it; never admitted past the gate by the lean path
            elif self._owed == 0 and self._lean is not None and self._take(data):
                return
            self._feed(data)
            # pending once a whole request head is read (its handler starts next turn): a
            # head still coming (aiohttp gives a first one no deadline) holds no place
            if self._messages:
                self._pending = True
                gate.pending += 1
            return
        self._feed(data)

    def _just_answered(self) -> bool:
        """Whether aiohttp's ``start``, without a waiter, has answered the connection's last
        request and not yet looped back to wait for the next: under uvloop a client's next
        request is often read before that turn (taken as busy, a connection that aiohttp
        served once stayed aiohttp's while the client kept up). Only where ``_owed`` is
        followed (the lean path on), so that the rest of a body aiohttp still reads is never
        taken for requests."""
        return (
            self._lean is not None
            and self._owed == 0
            and not self._request_in_progress
            # a pipelined request aiohttp popped is not in progress until its task runs
            and self._started == self._request_count
        )

    def _feed(self, data: bytes) -> None:
        """``data`` to aiohttp's parser, following where its requests end (``_owed``)."""
        if self._lean is None:  # nothing reads ``_owed``: 2-3 us a request saved
            super().data_received(data)
            return
        owed = self._owed
        if owed == 0:
            self._owed = framing(data)
        elif owed > 0:
            self._owed = owed - len(data) if len(data) <= owed else framing(data[owed:])
        super().data_received(data)

    def _shed(self, data: bytes) -> bool:
        """Answer ``data`` with canned 503s if it is only whole plain requests (else
        aiohttp takes it and ``edge`` refuses what is still over the cap)."""
        if self._upgraded or self._close or self._force_close or self.transport is None:
            return False
        count = requests_in(data, self._cors)
        if not count:
            return False
        self.transport.write(self._gate.canned_refusal(count))
        if self._keepalive_handle is not None:  # the connection was used: idle from now
            self._next_keepalive_close_time = self._loop.time() + self._keepalive_timeout
        return True

    def _take(self, data: bytes) -> bool:
        """Answer ``data`` here if it is one plain whole request to a lean route: admitted
        now (the gate has room: ``data_received`` shed otherwise), answered by a task."""
        assert self._lean is not None
        if self._upgraded or self._close or self._force_close or self.transport is None:
            return False
        head = self._lean.scan(data)
        if head is None:
            return False
        self._gate.open += 1
        self._request_count += 1
        self._started += 1
        self._request_in_progress = True  # a graceful shutdown waits for it
        self._lean_task = self._loop.create_task(self._answer(head))
        return True

    async def _answer(self, head: Head) -> None:
        """Answer as aiohttp's ``start`` would: the bytes written (unless the client left:
        then, as aiohttp's handler, the work is done unheard), drained, the connection idle
        again with its keep-alive deadline, and what arrived meanwhile given to aiohttp."""
        assert self._lean is not None
        try:
            try:
                data = await self._lean.answer(head)
            finally:
                self._gate.open -= 1
            transport = self.transport
            if transport is not None:
                transport.write(data)
                if self._paused:
                    await self._drain_helper()
        except ConnectionError:
            return  # gone while draining: the connection is closing
        finally:
            self._lean_task = None
            self._request_in_progress = False
            if self._handler_waiter is not None:
                self._handler_waiter.set_result(None)
        if self._close or self._force_close:  # as ``start`` ends after a request
            if self.transport is not None:
                self.transport.close()
            return
        close_time = self._loop.time() + self._keepalive_timeout
        self._next_keepalive_close_time = close_time
        if self._keepalive_handle is None:
            self._keepalive_handle = self._loop.call_at(close_time, self._process_keepalive)
        if self._held_paused:
            self._held_paused = False
            if self.transport is not None:
                self.transport.resume_reading()
        if self._held:
            held, self._held, self._held_bytes = self._held, [], 0
            self.data_received(b"".join(held))

    def _process_keepalive(self) -> None:
        if self._lean_task is not None:  # not idle: ``_answer`` sets the next deadline
            self._keepalive_handle = None
            return
        super()._process_keepalive()

    async def _handle_request(
        self,
        request: BaseRequest,
        start_time: float | None,
        request_handler: Callable[[BaseRequest], Awaitable[web.StreamResponse]],
    ) -> tuple[web.StreamResponse, bool]:
        """Runs as the request reaches its handler (aiohttp starts it as a task, a turn
        after the request was read): no longer pending, in flight from here."""
        self._settle()
        self._started += 1
        return await super()._handle_request(request, start_time, request_handler)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._settle()
        super().connection_lost(exc)

    def _settle(self) -> None:
        if self._pending:
            self._pending = False
            self._gate.pending -= 1


class _SheddingServer(web.Server):
    """aiohttp's connection factory, making :class:`SheddingHandler`s."""

    gate: Gate
    cors: bool
    lean: LeanPath | None

    def __call__(self) -> RequestHandler:
        handler = SheddingHandler(self, loop=self._loop, **self._kwargs)
        handler._gate = self.gate
        handler._cors = self.cors
        handler._pending = False
        handler._lean = self.lean
        handler._lean_task = None
        handler._held = []
        handler._held_bytes = 0
        handler._held_paused = False
        handler._owed = 0
        handler._started = 0
        return handler


_HANDLER_STATE = (
    "_waiter",
    "_request_in_progress",
    "_messages",
    "_payload_parser",
    "_upgraded",
    "_close",
    "_force_close",
    "_keepalive_handle",
    "_next_keepalive_close_time",
    "_keepalive_timeout",
    "_loop",
)
_LEAN_STATE = (
    "_request_count",
    "_handler_waiter",
    "_paused",
    "transport",
)
"""What the lean answer also reads and sets (``lean_compatible``)."""


def compatible() -> bool:
    """Whether this aiohttp's protocol has the internals the shedding handler reads (they
    are private: a release that renames one turns shedding off, not the service)."""
    slots: set[str] = set()
    for cls in RequestHandler.__mro__:
        slots.update(getattr(cls, "__slots__", ()))
    try:
        handle = inspect.signature(RequestHandler._handle_request)
    except (AttributeError, ValueError):
        return False
    return (
        all(name in slots for name in _HANDLER_STATE)
        and list(handle.parameters) == ["self", "request", "start_time", "request_handler"]
        and callable(getattr(web.AppRunner, "_make_server", None))
    )


def lean_compatible() -> bool:
    """Whether this aiohttp's protocol also has what the lean answer reads and sets (else
    ``serve`` answers every request through aiohttp)."""
    slots: set[str] = set()
    for cls in RequestHandler.__mro__:
        slots.update(getattr(cls, "__slots__", ()))
    return (
        compatible()
        and all(name in slots for name in _LEAN_STATE)
        and callable(getattr(RequestHandler, "_process_keepalive", None))
        and callable(getattr(RequestHandler, "_drain_helper", None))
    )


class SheddingRunner(web.AppRunner):
    """An ``AppRunner`` whose connections shed past the app's requests gate."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        app = self.app
        if GATE in app and not compatible():
            log.warning(
                "shedding before parsing is off: this aiohttp's internals differ; "
                "requests over the cap are refused after routing",
                extra={"aiohttp": aiohttp.__version__},
            )
        elif GATE in app and hasattr(server, "_kwargs"):
            server.__class__ = _SheddingServer  # aiohttp's own, with another factory
            assert isinstance(server, _SheddingServer)
            server.gate = app[GATE]
            server.cors = SETTINGS in app and bool(app[SETTINGS].cors_origins)
            cancelling = bool(getattr(server, "handler_cancellation", True))
            usable = lean_compatible() and LeanPath.usable(app, cancelling)
            server.lean = LeanPath(app) if usable else None
        return server


def run_app(
    app: web.Application,
    sockets: Sequence[socket.socket],
    loop: asyncio.AbstractEventLoop,
    *,
    shutdown_timeout: float,
    backlog: int = 128,
) -> None:
    """``web.run_app(app, sock=sockets, print=None, access_log=None, ...)`` with
    :class:`SheddingRunner`: serves until SIGINT or SIGTERM, then shuts down gracefully.
    ``backlog``: the sockets' listen backlog (serving listens on them again, with it)."""
    asyncio.set_event_loop(loop)
    runner = SheddingRunner(
        app, handle_signals=True, access_log=None, shutdown_timeout=shutdown_timeout
    )

    async def serve() -> None:
        await runner.setup()
        try:
            for sock in sockets:
                await web.SockSite(runner, sock, backlog=backlog).start()
            await asyncio.Event().wait()  # until a signal raises GracefulExit
        finally:
            await runner.cleanup()

    main = loop.create_task(serve())
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        if not main.done():
            main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(main)
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.gather(*asyncio.all_tasks(loop), return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
