"""The views ledger, oldest first (or newest first with ``order=desc``), for dashboards
and audits. The views of a user whose view history is hidden are listed to admins (the
audit record of the deployment) and to that user alone, never to other dashboards."""

from __future__ import annotations

from aiohttp import web

from presence_svc.cursors import decode_cursor, encode_cursor
from presence_svc.http.params import query_choice, query_id, query_int, query_time
from presence_svc.http.resources import LEDGER, LIMITER, TOKENS
from presence_svc.http.wire import respond
from presence_svc.ledger.store import LedgerQuery
from presence_svc.principal import Scope
from presence_svc.ratelimits import RouteClass
from presence_svc.schemas import LedgerItemOut, LedgerOut
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
