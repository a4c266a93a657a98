"""The app factory: one place that wires middlewares, resources and routes."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from presence_svc import metrics
from presence_svc.api import dashboard, events, ledger, ops, presence, users, views
from presence_svc.auth import TokenCodec, load_or_create_secret
from presence_svc.cors import preflight, setup_cors
from presence_svc.errors import problem_for
from presence_svc.resources import (
    SETTINGS,
    TOKENS,
    database_ctx,
    end_event_streams,
    hub_ctx,
    redis_ctx,
)
from presence_svc.settings import Settings
from presence_svc.wire import MAX_BODY_BYTES
from presence_svc.worker import worker_ctx

__all__ = ["create_app"]

# 1000 x "artifactId=" + 128 characters, percent-encoded at worst for ':' and '@'.
MAX_REQUEST_LINE_BYTES = 256 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def edge_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """What every request goes through, in one layer (each middleware layer costs a
    coroutine and a wrapper per request): a CORS preflight is answered before routing;
    any failure becomes a problem+json answer; every other answer is counted and timed by
    route template (never by artifact or user)."""
    answer = preflight(request)
    if answer is not None:
        return answer
    started = time.perf_counter()
    try:
        response = await handler(request)
    except Exception as exc:
        response = problem_for(request, exc)
    info = request.match_info.route.resource
    route = info.canonical if info is not None else "unmatched"
    metrics.observe_request(route, request.method, response.status, time.perf_counter() - started)
    return response


def create_app(settings: Settings) -> web.Application:
    """The whole HTTP API for ``settings`` (its Redis URL must be set: the embedded Redis,
    if any, is started by the caller so several server processes can share it)."""
    app = web.Application(
        middlewares=[edge_middleware],
        client_max_size=MAX_BODY_BYTES,
        # GET /v1/online takes up to 1000 ids of up to 128 characters in its query.
        handler_args={"max_line_size": MAX_REQUEST_LINE_BYTES},
    )
    app[SETTINGS] = settings
    app[TOKENS] = TokenCodec(settings.jwt_secret or load_or_create_secret(settings.data_dir))
    app.cleanup_ctx.append(redis_ctx)
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(hub_ctx)
    app.on_shutdown.append(end_event_streams)
    if settings.run_worker:
        app.cleanup_ctx.append(worker_ctx)
    app.add_routes(presence.routes)
    app.add_routes(events.routes)
    app.add_routes(views.routes)
    app.add_routes(ledger.routes)
    app.add_routes(users.routes)
    app.add_routes(ops.routes)
    app.add_routes(dashboard.routes)
    setup_cors(app)
    return app
