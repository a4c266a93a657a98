"""Views and their statistics: record a view, stats, viewers, a user's recent list."""

from __future__ import annotations

from aiohttp import web

from presence_svc.http.answer import LeanAnswer
from presence_svc.http.params import path_id, query_int
from presence_svc.http.resources import LIMITER, PRIVACY, TOKENS, USERS, VIEWS
from presence_svc.http.wire import Asked, Body, RequestAsked, encoded, respond
from presence_svc.live.rows import profiles_or_none
from presence_svc.ratelimits import VIEW, RouteClass
from presence_svc.schemas import (
    HistogramBucketOut,
    RecentItemOut,
    RecentOut,
    StatsOut,
    VersionStatsOut,
    ViewerOut,
    ViewersOut,
    ViewIn,
    ViewOut,
)
from presence_svc.stats.engagement import BUCKETS_S
from presence_svc.stats.views import RECENT_KEEP
from presence_svc.timefmt import to_iso

__all__ = ["routes", "view"]

routes = web.RouteTableDef()
_VIEW = Body(ViewIn)


@routes.post("/v1/views")
async def record_view(request: web.Request) -> web.Response:
    return LeanAnswer.ok(*await view(request.app, RequestAsked(request)))


async def view(app: web.Application, asked: Asked) -> tuple[bytes, str]:
    """A view's answer (its body and media type): one implementation of its checks, in
    this order, and of its answer, for aiohttp's handler and ``http/lean``'s table alike,
    as ``presence.beat`` is."""
    principal = app[TOKENS].from_header(asked.authorization)
    body = await asked.body(_VIEW)
    principal.require_write(body.artifact_id)
    app[LIMITER].admit(principal, VIEW)
    recorded = await app[VIEWS].record(
        body.artifact_id,
        body.version_id,
        principal.user_id,
        body.session_id,
        app[PRIVACY].views_hidden(principal.user_id),
    )
    out = ViewOut(
        counted=recorded.counted, views=recorded.views, unique_viewers=recorded.unique_viewers
    )
    return encoded(out, asked.accept)


@routes.get("/v1/artifacts/{artifactId}/stats")
async def stats(request: web.Request) -> web.Response:
    app = request.app
    principal = app[TOKENS].from_request(request)
    principal.require_dashboard()
    artifact_id = path_id(request, "artifactId")
    await app[LIMITER].check(principal, RouteClass.READ)
    found = await app[VIEWS].stats(artifact_id)
    out = StatsOut(
        artifact_id=artifact_id,
        views=found.views,
        unique_viewers=found.unique_viewers,
        last_viewed_at=to_iso(found.last_viewed_at_ms) if found.last_viewed_at_ms else None,
        engaged_ms=sum(v.engaged_ms for v in found.versions),
        versions=[
            VersionStatsOut(
                version_id=v.version_id,
                views=v.views,
                unique_viewers=v.unique_viewers,
                last_viewed_at=to_iso(v.last_viewed_at_ms),
                engaged_ms=v.engaged_ms,
                readers=v.readers,
                histogram=[
                    HistogramBucketOut(from_s=floor, viewers=count)
                    for floor, count in zip(BUCKETS_S, v.histogram, strict=True)
                ],
            )
            for v in found.versions
        ],
    )
    return respond(request, out)


@routes.get("/v1/artifacts/{artifactId}/versions/{versionId}/viewers")
async def viewers(request: web.Request) -> web.Response:
    app = request.app
    principal = app[TOKENS].from_request(request)
    principal.require_dashboard()
    artifact_id = path_id(request, "artifactId")
    version_id = path_id(request, "versionId")
    limit = query_int(request, "limit", default=100, low=1, high=500)
    await app[LIMITER].check(principal, RouteClass.READ)
    page = await app[VIEWS].viewers(
        artifact_id, version_id, limit, request.query.get("cursor") or None, principal.user_id
    )
    found = await profiles_or_none(app[USERS].get_profiles, (v.user_id for v in page.viewers))
    profiles = found or {}
    rows = []
    for viewer in page.viewers:
        profile = profiles.get(viewer.user_id)
        rows.append(
            ViewerOut(
                user_id=viewer.user_id,
                name=profile.name if profile else None,
                avatar_url=profile.avatar_url if profile else None,
                views=viewer.views,
                first_viewed_at=to_iso(viewer.first_viewed_at_ms),
                last_viewed_at=to_iso(viewer.last_viewed_at_ms),
                engaged_ms=viewer.engaged_ms,
            )
        )
    out = ViewersOut(
        viewers=rows,
        next_cursor=page.next_cursor,
        names_joined=found is not None,
        hidden_viewers=page.hidden,
    )
    return respond(request, out)


@routes.get("/v1/users/{userId}/recent")
async def recent(request: web.Request) -> web.Response:
    app = request.app
    principal = app[TOKENS].from_request(request)
    user_id = path_id(request, "userId")
    principal.require_user_read(user_id)
    limit = query_int(request, "limit", default=50, low=1, high=RECENT_KEEP)
    await app[LIMITER].check(principal, RouteClass.READ)
    items = await app[VIEWS].recent(user_id, limit)
    return respond(
        request,
        RecentOut(
            items=[
                RecentItemOut(
                    artifact_id=i.artifact_id,
                    version_id=i.version_id,
                    last_viewed_at=to_iso(i.last_viewed_at_ms),
                )
                for i in items
            ]
        ),
    )
