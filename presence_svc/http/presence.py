"""Live presence: heartbeat, leave, online counts and the presence list."""

from __future__ import annotations

import msgspec
from aiohttp import web

from presence_svc.errors import BadRequest, FieldError
from presence_svc.http.answer import LeanAnswer
from presence_svc.http.params import path_id, query_ids, query_int, query_set
from presence_svc.http.resources import (
    ENGAGEMENT,
    LIMITER,
    PAGES,
    PRESENCE,
    PRIVACY,
    SETTINGS,
    TOKENS,
    USERS,
)
from presence_svc.http.wire import (
    JSON,
    Asked,
    Body,
    Read,
    RequestAsked,
    encoded,
    respond,
    wants,
    wants_msgpack,
)
from presence_svc.live.rows import presence_out, with_recent, without_hidden
from presence_svc.ratelimits import HEARTBEAT, RouteClass
from presence_svc.schemas import (
    HeartbeatIn,
    HeartbeatOut,
    LeaveIn,
    OnlineCounts,
    OnlineOut,
)

__all__ = [
    "MAX_BATCH",
    "MAX_STATE_BYTES",
    "PRESENCE_INCLUDES",
    "beat",
    "online_counts",
    "presence_page",
    "routes",
]

routes = web.RouteTableDef()

MAX_STATE_BYTES = 1024
MAX_BATCH = 1000
PRESENCE_INCLUDES = ("sessions", "recent")
"""What ``?include=`` may ask the presence list for (a comma list): each row's sessions,
and the users recently here who are offline now."""
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
    return LeanAnswer.ok(*await beat(request.app, RequestAsked(request)))


async def beat(app: web.Application, asked: Asked) -> tuple[bytes, str]:
    """The heartbeat's answer (its body and media type), for aiohttp's handler above and for
    ``http/lean``, which answers plain heartbeats before aiohttp parses them: one
    implementation of its checks, in this order, and of its answer."""
    principal = app[TOKENS].from_header(asked.authorization)
    body = await asked.body(_HEARTBEAT)
    principal.require_write(body.artifact_id)
    state = _state_json(body.state)
    app[LIMITER].admit(principal, HEARTBEAT)
    counts = await app[PRESENCE].heartbeat(
        body.artifact_id,
        body.session_id,
        principal.user_id,
        body.version_id,
        state,
        body.status == "away",
        app[ENGAGEMENT].engagement(body.engaged_ms),
        app[PRIVACY].presence_hidden(principal.user_id),
    )
    out = HeartbeatOut(
        online=counts.online,
        sessions=counts.sessions,
        active=counts.active,
        away=counts.away,
        interval_s=app[SETTINGS].heartbeat_interval_s,
    )
    return encoded(out, asked.accept)


@routes.post("/v1/leave")
async def leave(request: web.Request) -> web.Response:
    app = request.app
    body = await _LEAVE.read(request)
    principal = app[TOKENS].from_request(request, fallback=body.token)
    principal.require_write(body.artifact_id)
    app[LIMITER].admit(principal, HEARTBEAT)
    counts = await app[PRESENCE].leave(
        body.artifact_id,
        body.session_id,
        principal.user_id,
        grace=body.grace,
        engaged=app[ENGAGEMENT].leaving(body.engaged_ms),
    )
    return respond(
        request,
        OnlineCounts(
            online=counts.online, sessions=counts.sessions, active=counts.active, away=counts.away
        ),
    )


@routes.get("/v1/artifacts/{artifactId}/online")
async def artifact_online(request: web.Request) -> web.Response:
    return LeanAnswer.ok(*await online_counts(request.app, RequestAsked(request)))


async def online_counts(app: web.Application, asked: Read) -> tuple[bytes, str]:
    """One artifact's online counts (the body and media type), for aiohttp's handler above
    and for ``http/lean``, which answers plain reads before aiohttp parses them."""
    principal = app[TOKENS].from_header(asked.authorization)
    artifact_id = path_id(asked, "artifactId")
    principal.require_presence_read([artifact_id])
    counts = await app[LIMITER].guard(
        principal, RouteClass.READ, lambda: app[PRESENCE].online_one(artifact_id)
    )
    out = OnlineOut(
        artifact_id=artifact_id,
        online=counts.online,
        sessions=counts.sessions,
        active=counts.active,
        away=counts.away,
    )
    return encoded(out, asked.accept)


@routes.get("/v1/online")
async def batch_online(request: web.Request) -> web.Response:
    app = request.app
    principal = app[TOKENS].from_request(request)
    artifact_ids = query_ids(request, "artifactId", most=MAX_BATCH)
    principal.require_presence_read(artifact_ids)
    store = app[PRESENCE]
    if wants_msgpack(request):
        counts = await app[LIMITER].guard(
            principal, RouteClass.READ, lambda: store.online(artifact_ids)
        )
        # The store's Counts encode as OnlineCounts do: no copy of 1 000 of them into the
        # documented BatchOnline.
        return respond(request, {"counts": counts})
    # JSON: the scripts write each artifact's member of the object (lua/live/online.lua),
    # so 1 000 counts are never decoded and encoded again here; the same bytes as above.
    members = await app[LIMITER].guard(
        principal, RouteClass.READ, lambda: store.online_json(artifact_ids)
    )
    return web.Response(body=b'{"counts":{' + members + b"}}\n", content_type=JSON)


@routes.get("/v1/artifacts/{artifactId}/presence")
async def presence_list(request: web.Request) -> web.Response:
    return LeanAnswer.ok(*await presence_page(request.app, RequestAsked(request)))


async def presence_page(app: web.Application, asked: Read) -> tuple[bytes, str]:
    """The presence list's answer (its body and media type), for aiohttp's handler above
    and for ``http/lean``: one implementation of its checks, in this order."""
    principal = app[TOKENS].from_header(asked.authorization)
    artifact_id = path_id(asked, "artifactId")
    principal.require_presence_read([artifact_id])
    limit = query_int(asked, "limit", default=100, low=1, high=500)
    include = query_set(asked, "include", PRESENCE_INCLUDES)
    query = asked.query
    cursor = query.get("cursor") or None
    recent_limit = recent_cursor = None
    if "recent" in include:
        recent_limit = query_int(asked, "recentLimit", default=100, low=1, high=500)
        recent_cursor = query.get("recentCursor") or None
    await app[LIMITER].check(principal, RouteClass.READ)
    store = app[PRESENCE]
    privacy = app[PRIVACY]
    listing = "sessions" in include
    if recent_limit is None:
        # A user who just turned invisible is out of the list at once (their sessions
        # carry the mark from their next heartbeat on): the page cache checks that too.
        return await app[PAGES].answer(
            wants(asked.accept), store, app[USERS], privacy, artifact_id, limit, cursor, listing
        )
    page = await store.page(artifact_id, limit, cursor, sessions=listing)
    # ... and out of the recently-here list as well.
    page = without_hidden(page, privacy.presence_hidden)
    out = await presence_out(app[USERS], page)
    recent = await store.recent.page(artifact_id, recent_limit, recent_cursor)
    recent = without_hidden(recent, privacy.presence_hidden)
    return encoded(await with_recent(app[USERS], out, recent), asked.accept)
