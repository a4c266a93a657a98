"""Live presence: heartbeat, leave, online counts and the presence list."""

from __future__ import annotations

import msgspec
from aiohttp import web

from presence_svc.errors import BadRequest, FieldError
from presence_svc.http.params import path_id, query_ids, query_include, query_int
from presence_svc.http.resources import PRESENCE, SETTINGS, TOKENS, USERS
from presence_svc.http.wire import Body, respond
from presence_svc.live.recent import is_recent_cursor
from presence_svc.live.rows import presence_out, with_recent
from presence_svc.schemas import (
    HeartbeatIn,
    HeartbeatOut,
    LeaveIn,
    OnlineCounts,
    OnlineOut,
)

__all__ = ["MAX_BATCH", "MAX_STATE_BYTES", "PRESENCE_INCLUDE", "routes"]

routes = web.RouteTableDef()

MAX_STATE_BYTES = 1024
MAX_BATCH = 1000
PRESENCE_INCLUDE = ("recent",)
"""Values of the presence list's ``include`` (a comma list, ``http.params.query_include``)."""
_HEARTBEAT = Body(HeartbeatIn)
_LEAVE = Body(LeaveIn, allow_text=True)
_JSON = msgspec.json.Encoder()


def _state_json(state: dict[str, object] | None) -> bytes | None:
    if state is None:
        return None
    blob = _JSON.encode(state)
    if len(blob) > MAX_STATE_BYTES:
        raise BadRequest(
            "state is too large",
            errors=[
                FieldError("state", f"at most {MAX_STATE_BYTES} bytes as JSON, got {len(blob)}")
            ],
        )
    return blob


@routes.post("/v1/heartbeat")
async def heartbeat(request: web.Request) -> web.Response:
    app = request.app
    principal = app[TOKENS].from_request(request)
    body = await _HEARTBEAT.read(request)
    principal.require_write(body.artifact_id)
    counts = await app[PRESENCE].heartbeat(
        body.artifact_id,
        body.session_id,
        principal.user_id,
        body.version_id,
        _state_json(body.state),
    )
    out = HeartbeatOut(
        online=counts.online,
        sessions=counts.sessions,
        interval_s=app[SETTINGS].heartbeat_interval_s,
    )
    return respond(request, out)


@routes.post("/v1/leave")
async def leave(request: web.Request) -> web.Response:
    app = request.app
    body = await _LEAVE.read(request)
    principal = app[TOKENS].from_request(request, fallback=body.token)
    principal.require_write(body.artifact_id)
    counts = await app[PRESENCE].leave(
        body.artifact_id, body.session_id, principal.user_id, grace=body.grace
    )
    return respond(request, OnlineCounts(online=counts.online, sessions=counts.sessions))


@routes.get("/v1/artifacts/{artifactId}/online")
async def artifact_online(request: web.Request) -> web.Response:
    app = request.app
    principal = app[TOKENS].from_request(request)
    artifact_id = path_id(request, "artifactId")
    principal.require_presence_read([artifact_id])
    counts = (await app[PRESENCE].online([artifact_id]))[artifact_id]
    return respond(
        request, OnlineOut(artifact_id=artifact_id, online=counts.online, sessions=counts.sessions)
    )


@routes.get("/v1/online")
async def batch_online(request: web.Request) -> web.Response:
    app = request.app
    principal = app[TOKENS].from_request(request)
    artifact_ids = query_ids(request, "artifactId", most=MAX_BATCH)
    principal.require_presence_read(artifact_ids)
    counts = await app[PRESENCE].online(artifact_ids)
    # The store's Counts encode as OnlineCounts do: no copy of 1 000 of them into the
    # documented BatchOnline; the same JSON (or msgpack).
    return respond(request, {"counts": counts})


def _online_cursor(cursor: str) -> None:
    """A 400 naming ``cursor`` for a cursor this list did not issue (a recentCursor)."""
    problem = BadRequest(
        "cursor is not a nextCursor of the presence list",
        errors=[FieldError("cursor", "must be the nextCursor of the previous page")],
    )
    try:
        recent = is_recent_cursor(cursor)
    except BadRequest as exc:
        raise problem from exc
    if recent:
        raise problem


@routes.get("/v1/artifacts/{artifactId}/presence")
async def presence_list(request: web.Request) -> web.Response:
    app = request.app
    principal = app[TOKENS].from_request(request)
    artifact_id = path_id(request, "artifactId")
    principal.require_presence_read([artifact_id])
    limit = query_int(request, "limit", default=100, low=1, high=500)
    include = query_include(request, "include", PRESENCE_INCLUDE)
    cursor = request.query.get("cursor") or None
    if cursor:
        _online_cursor(cursor)
    store = app[PRESENCE]
    out = await presence_out(app[USERS], await store.page(artifact_id, limit, cursor))
    if "recent" in include:
        recent_limit = query_int(request, "recentLimit", default=100, low=1, high=500)
        recent_cursor = request.query.get("recentCursor") or None
        recent = await store.recent.page(artifact_id, recent_limit, recent_cursor)
        out = await with_recent(app[USERS], out, recent)
    return respond(request, out)
