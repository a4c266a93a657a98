"""The live events of an artifact as server-sent events (``text/event-stream``).

``sync`` (the presence list and the stream's mode) first, then ``join``, ``leave``,
``state`` and ``count``, or in a large room one ``interval`` event per interval; a
keep-alive comment when nothing happened for a while. Browsers' ``EventSource`` cannot set
headers, so this endpoint alone also takes the token as ``?access_token=``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec
from aiohttp import web
from redis.exceptions import RedisError

from presence_svc import metrics
from presence_svc.errors import ServiceUnavailable
from presence_svc.http.params import path_id, query_int
from presence_svc.http.resources import HUB, LIMITER, PRESENCE, PRIVACY, SETTINGS, TOKENS, USERS
from presence_svc.live.events import Listener, StreamClosed, sse_frame
from presence_svc.live.rows import presence_out, without_hidden
from presence_svc.ratelimits import RouteClass
from presence_svc.schemas import SyncEvent

__all__ = ["routes"]

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

_JSON = msgspec.json.Encoder()
_RETRY = b"retry: 2000\n\n"
_KEEPALIVE = b": keep-alive\n\n"


async def _sync(request: web.Request, artifact_id: str, limit: int, listener: Listener) -> bytes:
    """The ``sync`` frame, read after the listener was attached so nothing falls between."""
    listener.sync_needed = False
    sync_id = listener.sync_id
    topic = listener.topic

    async def read() -> bytes:
        mode = topic.mode  # a switch after this resyncs the listeners again
        page = await request.app[PRESENCE].page(artifact_id, limit, None)
        page = without_hidden(page, request.app[PRIVACY].presence_hidden)  # as the list
        out = await presence_out(request.app[USERS], page)
        return _JSON.encode(SyncEvent(**msgspec.structs.asdict(out), mode=mode))

    # keyed by epoch: a read begun before a resync (a mode switch) is not good after it
    data = await topic.shared_read(("sync", limit, topic.epoch), listener, read)
    return sse_frame("sync", data, sync_id)


async def _counts(request: web.Request, artifact_id: str, listener: Listener) -> bytes:
    """After a resume: the current counts (no id, so the client's last id stays)."""

    async def read() -> bytes:
        counts = await request.app[PRESENCE].online_one(artifact_id)
        return _JSON.encode(counts)  # the store's Counts encode as OnlineCounts

    return sse_frame("count", await listener.topic.shared_read("count", listener, read))


@routes.get("/v1/artifacts/{artifactId}/events")
async def events(request: web.Request) -> web.StreamResponse:
    app = request.app
    principal = app[TOKENS].from_request(request, fallback=request.query.get("access_token"))
    artifact_id = path_id(request, "artifactId")
    principal.require_presence_read([artifact_id])
    limit = query_int(request, "limit", default=100, low=1, high=500)
    await app[LIMITER].check(principal, RouteClass.READ)
    keepalive_s = app[SETTINGS].events_keepalive_s

    def alive() -> bool:
        transport = request.transport
        return transport is not None and not transport.is_closing()

    hub = app[HUB]
    try:
        listener = await hub.attach(artifact_id, request.headers.get("Last-Event-ID"), alive)
    except StreamClosed as exc:
        raise ServiceUnavailable("the server is shutting down") from exc
    except (RedisError, OSError, TimeoutError) as exc:
        raise ServiceUnavailable("cannot subscribe to presence events; retry shortly") from exc
    listener.on_overflow = _dropper(request)
    try:
        # Reads that can fail happen before the answer starts, so a failure is a 503.
        first = await listener.wait(0)
        if listener.sync_needed:
            head = _RETRY + await _sync(request, artifact_id, limit, listener) + b"".join(first)
        else:  # resumed: what was missed, then where the counts are now
            head = _RETRY + b"".join(first) + await _counts(request, artifact_id, listener)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache, no-transform",
                "X-Accel-Buffering": "no",
            }
        )
        try:
            await response.prepare(request)
            await response.write(head)
        except ConnectionError as exc:  # the client left meanwhile: no Redis outage
            log.debug("event stream ended before it started", extra={"error": repr(exc)})
            return response
        await _stream(request, artifact_id, limit, listener, response, keepalive_s)
        return response
    finally:
        await hub.detach(listener)


def _dropper(request: web.Request) -> Callable[[], None]:
    """Ends the connection of a listener that fell too far behind. Its writer is likely
    stuck in a write (a client that stopped reading fills the socket buffers); the abort
    wakes it with a ``ConnectionError``. Other listeners never wait on it: the fan-out only
    queues frames, and each stream writes from its own handler."""
    transport = request.transport

    def drop() -> None:
        metrics.SSE_DROPPED.inc()
        if transport is not None:
            transport.abort()

    return drop


async def _stream(
    request: web.Request,
    artifact_id: str,
    limit: int,
    listener: Listener,
    response: web.StreamResponse,
    keepalive_s: float,
) -> None:
    """Write frames as they come until the client goes or the server stops."""
    try:
        while True:
            frames = await listener.wait(keepalive_s)
            chunk = b"".join(frames)
            if listener.sync_needed:
                chunk = await _sync(request, artifact_id, limit, listener) + chunk
            await response.write(chunk or _KEEPALIVE)
    except StreamClosed:
        pass
    except (ConnectionError, RedisError) as exc:
        # the client went away, or Redis did while resyncing: the client reconnects
        log.debug("event stream ended", extra={"error": repr(exc)})
