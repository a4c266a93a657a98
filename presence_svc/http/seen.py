"""The latest version of an artifact, and who has seen it: set and read the latest, the
seen list, an audience check, and a user's unseen artifacts."""

from __future__ import annotations

import msgspec
from aiohttp import web

from presence_svc.errors import NotFound
from presence_svc.http.answer import LeanAnswer
from presence_svc.http.params import joined_ids, path_id, query_id, query_ids, query_int
from presence_svc.http.resources import LIMITER, SEEN, TOKENS, USERS
from presence_svc.http.wire import (
    JSON,
    MAX_LARGE_BODY_BYTES,
    MSGPACK,
    Body,
    encode_body,
    respond,
    wants_msgpack,
)
from presence_svc.live.rows import profiles_or_none
from presence_svc.ratelimits import RouteClass
from presence_svc.schemas import (
    MAX_AUDIENCE,
    LatestIn,
    LatestOut,
    SeenCheckIn,
    SeenOut,
    SeenViewerOut,
    UnseenItemOut,
    UnseenOut,
)
from presence_svc.stats.seen import SeenStore
from presence_svc.timefmt import to_iso

__all__ = ["routes"]

routes = web.RouteTableDef()
_LATEST = Body(LatestIn)
_CHECK = Body(SeenCheckIn, max_bytes=MAX_LARGE_BODY_BYTES)


async def _version(store: SeenStore, artifact_id: str, given: str | None) -> str:
    """The version asked for, else the artifact's latest; 404 when it has none."""
    if given is not None:
        return given
    found = (await store.latest([artifact_id])).get(artifact_id)
    if found is None:
        raise _no_latest(artifact_id)
    return found.version_id


def _no_latest(artifact_id: str) -> NotFound:
    return NotFound(
        f"artifact {artifact_id!r} has no latest version: set one with "
        "PUT /v1/artifacts/{artifactId}/latest or give versionId"
    )


@routes.put("/v1/artifacts/{artifactId}/latest")
async def put_latest(request: web.Request) -> web.Response:
    app = request.app
    principal = app[TOKENS].from_request(request)
    artifact_id = path_id(request, "artifactId")
    principal.require_publish(artifact_id)
    body = await _LATEST.read(request)
    await app[LIMITER].check(principal, RouteClass.ADMIN)
    latest = await app[SEEN].set_latest(artifact_id, body.version_id)
    out = LatestOut(
        artifact_id=artifact_id, version_id=latest.version_id, set_at=to_iso(latest.set_at_ms)
    )
    return respond(request, out)


@routes.get("/v1/artifacts/{artifactId}/latest")
async def get_latest(request: web.Request) -> web.Response:
    app = request.app
    principal = app[TOKENS].from_request(request)
    artifact_id = path_id(request, "artifactId")
    principal.require_presence_read([artifact_id])
    await app[LIMITER].check(principal, RouteClass.READ)
    latest = (await app[SEEN].latest([artifact_id])).get(artifact_id)
    if latest is None:
        raise NotFound(f"artifact {artifact_id!r} has no latest version")
    out = LatestOut(
        artifact_id=artifact_id, version_id=latest.version_id, set_at=to_iso(latest.set_at_ms)
    )
    return respond(request, out)


@routes.get("/v1/artifacts/{artifactId}/seen")
async def seen(request: web.Request) -> web.Response:
    app = request.app
    principal = app[TOKENS].from_request(request)
    principal.require_dashboard()
    artifact_id = path_id(request, "artifactId")
    given = query_id(request, "versionId")
    limit = query_int(request, "limit", default=100, low=1, high=500)
    cursor = request.query.get("cursor") or None
    await app[LIMITER].check(principal, RouteClass.READ)
    store = app[SEEN]
    version_id = await _version(store, artifact_id, given)
    page = await store.page(artifact_id, version_id, limit, cursor, principal.user_id)
    found = await profiles_or_none(app[USERS].get_profiles, (v.user_id for v in page.viewers))
    profiles = found or {}
    rows = []
    for viewer in page.viewers:
        profile, entry = profiles.get(viewer.user_id), viewer.entry
        rows.append(
            SeenViewerOut(
                user_id=viewer.user_id,
                name=profile.name if profile else None,
                avatar_url=profile.avatar_url if profile else None,
                views=entry.views,
                first_viewed_at=to_iso(entry.first_viewed_at_ms),
                last_viewed_at=to_iso(entry.last_viewed_at_ms),
                engaged_ms=entry.engaged_ms,
                read=viewer.read,
            )
        )
    out = SeenOut(
        artifact_id=artifact_id,
        version_id=version_id,
        seen=page.seen,
        read=page.read,
        hidden_viewers=page.hidden,
        viewers=rows,
        next_cursor=page.next_cursor,
        names_joined=found is not None,
    )
    return respond(request, out)


class _CheckWire(msgspec.Struct, rename="camel", kw_only=True):
    """``SeenCheckOut`` (the documented answer) as it goes out: its lists come from the
    script as whole encoded arrays and are copied in as they are."""

    version_id: str
    seen: msgspec.Raw
    read: msgspec.Raw
    not_seen: msgspec.Raw
    hidden_viewers: int


@routes.post("/v1/artifacts/{artifactId}/seen/check")
async def seen_check(request: web.Request) -> web.Response:
    app = request.app
    principal = app[TOKENS].from_request(request)
    principal.require_dashboard()
    artifact_id = path_id(request, "artifactId")
    body = await _CHECK.read(request)
    user_ids = joined_ids("userIds", body.user_ids)
    await app[LIMITER].check(principal, RouteClass.READ)
    as_msgpack = wants_msgpack(request)
    found = await app[SEEN].check(artifact_id, body.version_id, user_ids, json=not as_msgpack)
    if found is None:
        raise _no_latest(artifact_id)
    out = _CheckWire(
        version_id=found.version_id,
        seen=msgspec.Raw(found.seen),
        read=msgspec.Raw(found.read),
        not_seen=msgspec.Raw(found.not_seen),
        hidden_viewers=found.hidden,
    )
    return LeanAnswer.ok(encode_body(out, as_msgpack), MSGPACK if as_msgpack else JSON)


@routes.get("/v1/users/{userId}/unseen")
async def unseen(request: web.Request) -> web.Response:
    app = request.app
    principal = app[TOKENS].from_request(request)
    user_id = path_id(request, "userId")
    principal.require_user_read(user_id)
    artifact_ids = query_ids(request, "artifactId", most=MAX_AUDIENCE)
    principal.require_presence_read(artifact_ids)
    await app[LIMITER].check(principal, RouteClass.READ)
    found = await app[SEEN].unseen(user_id, artifact_ids)
    items = [
        UnseenItemOut(
            artifact_id=artifact_id, version_id=latest.version_id, set_at=to_iso(latest.set_at_ms)
        )
        for artifact_id, latest in found
    ]
    return respond(request, UnseenOut(artifacts=items))
