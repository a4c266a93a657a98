"""One long-lived, pipelined Redis connection for the coalesced script calls.

redis-py serves one command (or one pipeline) per checked-out connection and reads each
answer through a chain of coroutines, so every coalesced batch cost a task, a pool
checkout and an ``await`` per answer, and a batch waited for a free connection while the
previous one was in flight. Here batches are written straight onto one connection as
they form and the answers are parsed (hiredis) as the bytes arrive, each resolving its
caller's future in order: no task, no extra loop turn between a batch forming and it
reaching Redis, and batches overlap on the wire as Redis itself pipelines them.

The bounds stay those of the client: the connection is made within the connect timeout,
every call is answered or failed within the deadline (a stopped Redis leaves the socket
open and silent, so a timer watches the oldest unanswered call), and a call whose
connection broke is sent once more on a fresh one, as redis-py's own retry would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import AuthenticationError, NoScriptError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from presence_svc.redis.refusal import refusal
from presence_svc.redis.resp import pack_command

__all__ = ["RedisPipe"]

log = logging.getLogger(__name__)


def _reply_error(message: str) -> Exception:
    """The redis-py exception for an error answer, for the errors callers tell apart: a
    refusal (``OOM``, ``READONLY``, ...) is a ``RedisRefused`` (503), and so is a full
    server (a connection error)."""
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    if message.startswith(("NOAUTH", "WRONGPASS", "ERR max number of clients")):
        return (
            AuthenticationError(message) if "AUTH" in message[:9] else RedisConnectionError(message)
        )
    error = ResponseError(message)
    return refusal(error) or error


@dataclass(slots=True)
class _Call:
    packed: bytes
    future: asyncio.Future[Any]
    due: float  # loop time by which it is answered or failed
    tries: int = 0
    written: float = 0.0  # loop time it was last written on a connection
    on_answer: Callable[[], None] | None = None  # the batch's last call: its answer is in
    count: int = 1  # answers it takes: any number for ``send_commands``
    listed: bool = False  # ``send_commands``: the answers as a list, even just one
    answers: list[Any] | None = None  # those collected so far (when listed)


@dataclass(frozen=True, slots=True)
class _Target:
    """Where and how to connect, taken from a redis-py client's pool settings."""

    path: str | None
    host: str
    port: int
    handshake: tuple[tuple[str | bytes | int, ...], ...] = field(default=())

    @classmethod
    def of(cls, client: Redis) -> _Target | None:
        """None when the client connects in a way this module does not (TLS, a credential
        provider, RESP3): the caller then keeps redis-py's own connections."""
        pool = client.connection_pool
        kwargs = pool.connection_kwargs
        if pool.connection_class not in (Connection, UnixDomainSocketConnection):
            return None
        if kwargs.get("credential_provider") or kwargs.get("protocol") not in (None, 2, "2"):
            return None
        handshake: list[tuple[str | bytes | int, ...]] = []
        if kwargs.get("password") is not None:
            username = kwargs.get("username")
            auth = ("AUTH", username, kwargs["password"]) if username else None
            handshake.append(auth or ("AUTH", kwargs["password"]))
        if kwargs.get("db"):
            handshake.append(("SELECT", int(kwargs["db"])))
        if kwargs.get("client_name"):
            handshake.append(("CLIENT", "SETNAME", kwargs["client_name"]))
        return cls(
            path=kwargs.get("path")
            if pool.connection_class is UnixDomainSocketConnection
            else None,
            host=str(kwargs.get("host", "localhost")),
            port=int(kwargs.get("port", 6379)),
            handshake=tuple(handshake),
        )


class _Protocol(asyncio.Protocol):
    """One connection: what was written on it, answered in order as the bytes arrive."""

    def __init__(self, pipe: RedisPipe) -> None:
        self.pipe = pipe
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader(replyError=_reply_error)
        self.inflight: deque[_Call] = deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def write(self, calls: list[_Call], now: float) -> None:
        assert self.transport is not None
        for call in calls:
            call.tries += 1
            call.written = now
            if call.listed:
                call.answers = []  # a call sent again collects its answers afresh
        self.inflight.extend(calls)
        self.transport.write(b"".join([call.packed for call in calls]))

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        inflight = self.inflight
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                if not inflight:  # an answer nobody asked for: the stream is out of step
                    raise hiredis.ProtocolError("an answer to no call")
                call = inflight[0]
                answers = call.answers
                if answers is not None:  # one of several commands: all answers, errors too
                    answers.append(reply)
                    if len(answers) < call.count:
                        continue
                    reply = answers
                inflight.popleft()
                future = call.future
                if not future.done():  # else its caller went away (cancelled, timed out)
                    if isinstance(reply, Exception):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
                if call.on_answer is not None:
                    call.on_answer()
        except hiredis.ProtocolError as exc:
            # Out of step with the server: what it still owes may have run, so none of it
            # is sent again; the callers get a 503.
            self.pipe._drop(self, RedisConnectionError(f"bad answer from Redis: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.pipe._lost(self, exc)


class RedisPipe:
    """Script calls for one Redis server on one pipelined connection (see the module)."""

    def __init__(self, target: _Target, *, connect_timeout_s: float, deadline_s: float) -> None:
        self._target = target
        self._connect_timeout_s = connect_timeout_s
        self._deadline_s = deadline_s
        self._protocol: _Protocol | None = None  # set once connected and greeted
        self._connecting: asyncio.Task[None] | None = None
        self._waiting: list[_Call] = []  # until a connection is up
        self._watchdog: asyncio.TimerHandle | None = None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def _running(self) -> asyncio.AbstractEventLoop:
        """The running loop, without asking asyncio per batch (a ``getpid`` system call on
        Python 3.11): the loop last seen, while it runs, is the caller's."""
        loop = self._loop
        if loop is None or not loop.is_running():
            loop = self._loop = asyncio.get_running_loop()
        return loop

    @classmethod
    def for_client(cls, client: Redis, deadline_s: float | None) -> RedisPipe | None:
        """A pipe to the server ``client`` talks to, with its timeouts; None if its way of
        connecting is not one this module speaks."""
        target = _Target.of(client)
        if target is None:
            return None
        kwargs = client.connection_pool.connection_kwargs
        connect_timeout = kwargs.get("socket_connect_timeout") or 5.0
        return cls(
            target,
            connect_timeout_s=float(connect_timeout),
            deadline_s=float(deadline_s or kwargs.get("socket_timeout") or 5.0),
        )

    def send(
        self,
        calls: list[tuple[bytes, asyncio.Future[Any]]],
        on_answered: Callable[[], None] | None = None,
        answers: Sequence[int] = (),
    ) -> None:
        """Write ``calls`` (packed commands) now, or as soon as a connection is up; each
        future gets its answer, an error answer as its exception. ``on_answered`` runs
        when the last of them is answered (not when it fails). ``answers``, if given, per
        call: 0 for one answer, else how many commands it packs, whose answers its future
        gets as a list (as ``send_commands`` gives them)."""
        loop = self._running()
        now = loop.time()
        due = now + self._deadline_s
        batch = [_Call(packed, future, due) for packed, future in calls]
        for call, count in zip(batch, answers, strict=False):
            if count:
                call.count, call.listed = count, True
        if on_answered is not None and batch:
            batch[-1].on_answer = on_answered
        if self._closed:
            self._fail(batch, RedisConnectionError("the Redis pipe is closed"))
            return
        if self._protocol is None:
            self._waiting += batch
            self._connect(loop)
        else:
            self._protocol.write(batch, now)
        if self._watchdog is None:
            self._arm(due)

    def send_commands(self, packed: bytes, count: int, future: asyncio.Future[Any]) -> None:
        """Write ``count`` packed commands now (or once connected) as one call: ``future``
        gets the list of their answers, an error answer in its place (one future, not one
        per command: a where-now check sends some 150 commands)."""
        loop = self._running()
        now = loop.time()
        due = now + self._deadline_s
        call = _Call(packed, future, due, count=count, listed=True)
        if self._closed:
            self._fail([call], RedisConnectionError("the Redis pipe is closed"))
            return
        if self._protocol is None:
            self._waiting.append(call)
            self._connect(loop)
        else:
            self._protocol.write([call], now)
        if self._watchdog is None:
            self._arm(due)

    def _arm(self, when: float) -> None:
        self._watchdog = asyncio.get_running_loop().call_at(when, self._watch)

    def _watch(self) -> None:
        """Fail what is overdue, and drop a connection that stopped answering: answers
        come in order, so one that left its oldest call unanswered for a whole deadline is
        not answering at all (a stopped Redis keeps its socket open). A call sent once more
        keeps its first deadline: it fails by then, but its new connection is dropped only
        for its own silence."""
        self._watchdog = None
        now = asyncio.get_running_loop().time()
        expired = RedisTimeoutError(f"Redis did not answer within {self._deadline_s:g} s")
        wake: list[float] = []
        protocol = self._protocol
        if protocol is not None and protocol.inflight:
            if protocol.inflight[0].written + self._deadline_s <= now:
                self._drop(protocol, expired)
            else:
                wake.append(protocol.inflight[0].written + self._deadline_s)
                for call in protocol.inflight:  # oldest first: stop at the first not due
                    if call.due > now:
                        wake.append(call.due)
                        break
                    if not call.future.done():
                        call.future.set_exception(expired)  # its answer will be dropped
        overdue = [call for call in self._waiting if call.due <= now]
        if overdue:
            self._waiting = [call for call in self._waiting if call.due > now]
            self._fail(overdue, expired)
        if self._waiting:
            wake.append(self._waiting[0].due)
        if wake and not self._closed:
            self._arm(min(wake))

    def _connect(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._connecting is None:
            self._connecting = loop.create_task(self._open())

    async def _open(self) -> None:
        """Connect and greet; then what waited is written. Until then the connection is
        not the pipe's: if it fails, what it owed (the greeting) fails with it."""
        loop = asyncio.get_running_loop()
        target = self._target
        protocol: _Protocol | None = None
        installed = False
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                if target.path is not None:
                    _, protocol = await loop.create_unix_connection(
                        lambda: _Protocol(self), target.path
                    )
                else:
                    _, protocol = await loop.create_connection(
                        lambda: _Protocol(self), target.host, target.port
                    )
                await self._handshake(protocol)
            if not self._closed:
                self._protocol = protocol
                installed = True
        except (OSError, TimeoutError, RedisConnectionError, ResponseError) as exc:
            failure = RedisConnectionError(f"cannot connect to Redis: {type(exc).__name__}: {exc}")
            waiting, self._waiting = self._waiting, []
            self._fail(waiting, failure)
        finally:
            self._connecting = None
            if not installed and protocol is not None and protocol.transport is not None:
                protocol.transport.abort()
        if installed:
            assert protocol is not None
            waiting, self._waiting = self._waiting, []
            if waiting:
                protocol.write(waiting, loop.time())

    async def _handshake(self, protocol: _Protocol) -> None:
        """AUTH, SELECT and CLIENT SETNAME, as the client's own connections send them."""
        if not self._target.handshake:
            return
        loop = asyncio.get_running_loop()
        calls = [
            _Call(pack_command(command), loop.create_future(), math.inf)
            for command in self._target.handshake
        ]
        protocol.write(calls, loop.time())
        # An error answer (a wrong password) raises here; gather also marks the others'
        # errors as seen when the connection fails them all.
        await asyncio.gather(*(call.future for call in calls))

    def _drop(self, protocol: _Protocol, exc: Exception) -> None:
        """Close a connection that cannot be trusted any more; what it still owed fails."""
        if protocol.transport is not None:
            protocol.transport.abort()  # connection_lost follows; it finds nothing owed
        self._lost(protocol, exc, retry=False)

    def _lost(self, protocol: _Protocol, exc: Exception | None, *, retry: bool = True) -> None:
        owed = list(protocol.inflight)
        protocol.inflight.clear()
        failure: Exception = exc or RedisConnectionError("Redis closed the connection")
        if not isinstance(failure, RedisConnectionError | RedisTimeoutError):
            failure = RedisConnectionError(f"lost the Redis connection: {failure}")
        if protocol is not self._protocol:
            # Still greeting (or long replaced): its calls are the greeting's, which fail
            # so that ``_open`` gives up at once; nothing of the callers' is on it.
            self._fail(owed, failure)
            return
        self._protocol = None
        resend = retry and not self._closed
        again = [c for c in owed if resend and c.tries < 2 and not c.future.done()]
        self._fail([c for c in owed if not (resend and c.tries < 2)], failure)
        if again:
            log.info("redis connection lost; sending again", extra={"calls": len(again)})
            self._waiting = again + self._waiting
            self._connect(asyncio.get_running_loop())

    @staticmethod
    def _fail(calls: list[_Call], exc: Exception) -> None:
        for call in calls:
            if not call.future.done():
                call.future.set_exception(exc)

    async def aclose(self) -> None:
        self._closed = True
        closed = RedisConnectionError("the Redis pipe is closed")
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        if self._protocol is not None:
            self._drop(self._protocol, closed)
        waiting, self._waiting = self._waiting, []
        self._fail(waiting, closed)

    def __repr__(self) -> str:
        where = self._target.path or f"{self._target.host}:{self._target.port}"
        return f"<RedisPipe {where} connected={self._protocol is not None}>"
