"""The views ledger, oldest first (or newest first with ``order=desc``), for dashboards
and audits. The views of a user whose view history is hidden are listed to admins (the
audit record of the deployment) and to that user alone, never to other dashboards."""

from __future__ import annotations

from aiohttp import web

from presence_svc.cursors import decode_cursor, encode_cursor
from presence_svc.errors import BadRequest, FieldError
from presence_svc.http.params import query_choice, query_id, query_int, query_time
from presence_svc.http.resources import DATABASE, LEDGER, LIMITER, TOKENS
from presence_svc.http.wire import respond
from presence_svc.ledger.engagement import EngagementQuery, day_range
from presence_svc.ledger.store import LedgerQuery
from presence_svc.principal import Scope
from presence_svc.ratelimits import RouteClass
from presence_svc.schemas import EngagementItemOut, EngagementOut, LedgerItemOut, LedgerOut
from presence_svc.timefmt import to_iso

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.get("/v1/ledger")
async def ledger(request: web.Request) -> web.Response:
    app = request.app
    principal = app[TOKENS].from_request(request)
    principal.require_dashboard()
    limit = query_int(request, "limit", default=100, low=1, high=1000)
    cursor = request.query.get("cursor")
    query = LedgerQuery(
        artifact_id=query_id(request, "artifactId"),
        user_id=query_id(request, "userId"),
        since_ms=query_time(request, "since"),
        until_ms=query_time(request, "until"),
        after=decode_cursor(cursor) if cursor else None,
        newest_first=query_choice(request, "order", ("asc", "desc")) == "desc",
        shown_to=None if principal.scope is Scope.ADMIN else principal.user_id,
    )
    await app[LIMITER].check(principal, RouteClass.READ)
    rows = await app[LEDGER].query_views(query, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    items = [
        LedgerItemOut(
            view_id=r.view_id,
            artifact_id=r.artifact_id,
            version_id=r.version_id,
            user_id=r.user_id,
            session_id=r.session_id,
            viewed_at=to_iso(r.viewed_at_ms),
        )
        for r in rows
    ]
    next_cursor = encode_cursor(rows[-1].viewed_at_ms, rows[-1].view_id) if more else None
    return respond(request, LedgerOut(items=items, next_cursor=next_cursor))


def _engagement_after(cursor: str) -> tuple[str, str, str, str]:
    day, rest = decode_cursor(cursor)
    parts = rest.split("/")
    if len(parts) != 3 or not 10_000_101 <= day <= 99_991_231:
        raise BadRequest(
            "cursor is invalid",
            errors=[FieldError("cursor", "the cursor is not one this service issued")],
        )
    text = f"{day:08d}"
    return f"{text[:4]}-{text[4:6]}-{text[6:]}", parts[0], parts[1], parts[2]


@routes.get("/v1/ledger/engagement")
async def engagement(request: web.Request) -> web.Response:
    """Engaged time per (artifact, version, user, UTC day), as the worker last wrote it."""
    app = request.app
    principal = app[TOKENS].from_request(request)
    principal.require_dashboard()
    limit = query_int(request, "limit", default=100, low=1, high=1000)
    cursor = request.query.get("cursor")
    since_day, until_day = day_range(query_time(request, "since"), query_time(request, "until"))
    query = EngagementQuery(
        artifact_id=query_id(request, "artifactId"),
        version_id=query_id(request, "versionId"),
        user_id=query_id(request, "userId"),
        since_day=since_day,
        until_day=until_day,
        after=_engagement_after(cursor) if cursor else None,
        shown_to=None if principal.scope is Scope.ADMIN else principal.user_id,
    )
    await app[LIMITER].check(principal, RouteClass.READ)
    rows = await app[DATABASE].engagement.query_engagement(query, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    items = [
        EngagementItemOut(
            artifact_id=r.artifact_id,
            version_id=r.version_id,
            user_id=r.user_id,
            day=r.day,
            engaged_ms=r.engaged_ms,
            updated_at=to_iso(r.updated_at_ms),
        )
        for r in rows
    ]
    next_cursor = None
    if more:
        last = rows[-1]
        key = f"{last.artifact_id}/{last.version_id}/{last.user_id}"
        next_cursor = encode_cursor(int(last.day.replace("-", "")), key)
    return respond(request, EngagementOut(items=items, next_cursor=next_cursor))
