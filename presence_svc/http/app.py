"""The app factory: one place that wires resources and routes (no middleware: see
``edge``)."""

from __future__ import annotations

from aiohttp import web

from presence_svc.auth import TokenCodec, load_or_create_secret
from presence_svc.http import dashboard, events, ledger, ops, presence, users, views, where
from presence_svc.http.cors import setup_cors
from presence_svc.http.edge import add_fallback, add_routes
from presence_svc.http.resources import (
    SETTINGS,
    TOKENS,
    database_ctx,
    end_event_streams,
    hub_ctx,
    redis_ctx,
    worker_ctx,
)
from presence_svc.http.wire import MAX_BODY_BYTES
from presence_svc.settings import Settings

__all__ = ["create_app"]

# 1000 x "artifactId=" + 128 characters, percent-encoded at worst for ':' and '@'.
MAX_REQUEST_LINE_BYTES = 256 * 1024


def create_app(settings: Settings) -> web.Application:
    """The whole HTTP API for ``settings`` (its Redis URL must be set: the embedded Redis,
    if any, is started by the caller so several server processes can share it)."""
    app = web.Application(
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
    add_routes(app, presence.routes)
    add_routes(app, events.routes)
    add_routes(app, views.routes)
    add_routes(app, ledger.routes)
    add_routes(app, users.routes)
    add_routes(app, where.routes)
    add_routes(app, ops.routes)
    add_routes(app, dashboard.routes)
    add_fallback(app)  # last: 404, 405 and CORS preflights, as problem+json
    setup_cors(app)
    return app
