"""The app factory: one place that wires resources and routes (no middleware: see
``edge``)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Sequence

from aiohttp import web

from presence_svc.auth import load_or_create_secret, token_codec
from presence_svc.http import (
    assets,
    dashboard,
    events,
    ledger,
    ops,
    presence,
    seen,
    timeline,
    users,
    views,
    webhooks,
    where,
)
from presence_svc.http.admission import GATE, Gate, adapt_limit, watch_lag
from presence_svc.http.cors import setup_cors
from presence_svc.http.edge import add_fallback, add_routes
from presence_svc.http.resources import (
    SETTINGS,
    TOKENS,
    database_ctx,
    end_event_streams,
    hub_ctx,
    privacy_ctx,
    redis_ctx,
    worker_ctx,
)
from presence_svc.http.wire import MAX_LARGE_BODY_BYTES
from presence_svc.settings import Settings

__all__ = ["create_app", "create_metrics_app", "metrics_ctx", "metrics_listener"]

# 1000 x "artifactId=" + 128 characters, percent-encoded at worst for ':' and '@'.
MAX_REQUEST_LINE_BYTES = 256 * 1024


def create_app(settings: Settings) -> web.Application:
    """The whole HTTP API for ``settings`` (its Redis URL must be set: the embedded Redis,
    if any, is started by the caller so several server processes can share it)."""
    app = web.Application(
        client_max_size=MAX_LARGE_BODY_BYTES,
        # GET /v1/online takes up to 1000 ids of up to 128 characters in its query.
        handler_args={"max_line_size": MAX_REQUEST_LINE_BYTES},
    )
    app[SETTINGS] = settings
    if settings.otel:  # the optional extra, imported only then
        from presence_svc.http.tracing import install_provider

        install_provider()
    app[TOKENS] = token_codec(
        settings, settings.jwt_secret or load_or_create_secret(settings.data_dir)
    )
    app.cleanup_ctx.append(redis_ctx)
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(privacy_ctx)
    app.cleanup_ctx.append(hub_ctx)
    app.on_shutdown.append(end_event_streams)
    if settings.run_worker:
        app.cleanup_ctx.append(worker_ctx)
    # Per process: every route but the operations ones (probes and scrapes must work under
    # overload) is behind a cap; a stream is long-lived, so streams have a cap of their own.
    requests = Gate("requests", settings.max_inflight, "requests in flight")
    streams = Gate("streams", settings.max_streams, "open event streams")
    app[GATE] = requests  # ``serve`` sheds on it before parsing (``shedding``)
    if settings.max_loop_lag_ms:
        app.cleanup_ctx.append(watch_lag(requests, settings.max_loop_lag_ms / 1000))
    if settings.target_lag_ms:
        app.cleanup_ctx.append(adapt_limit(requests, settings.target_lag_ms / 1000))
    add_routes(app, presence.routes, requests)
    add_routes(app, events.routes, streams)
    add_routes(app, views.routes, requests)
    add_routes(app, seen.routes, requests)
    add_routes(app, ledger.routes, requests)
    add_routes(app, users.routes, requests)
    add_routes(app, webhooks.routes, requests)
    add_routes(app, where.routes, requests)
    add_routes(app, timeline.routes, requests)
    add_routes(app, ops.routes)
    if settings.metrics_addr is None:  # else only on its own listener (create_metrics_app)
        add_routes(app, ops.metrics_routes)
    add_routes(app, dashboard.routes, requests)
    add_routes(app, assets.routes)
    add_fallback(app)  # last: 404, 405 and CORS preflights, as problem+json
    setup_cors(app)
    return app


def create_metrics_app() -> web.Application:
    """``GET /metrics`` alone, for the listener at ``PRESENCE_METRICS_ADDR``."""
    app = web.Application()
    add_routes(app, ops.metrics_routes)
    add_fallback(app)
    return app


def metrics_ctx(
    sockets: Sequence[socket.socket],
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context serving :func:`create_metrics_app` on ``sockets`` beside the API."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with metrics_listener(sockets):
            yield

    return ctx


@contextlib.asynccontextmanager
async def metrics_listener(sockets: Sequence[socket.socket]) -> AsyncIterator[None]:
    """:func:`create_metrics_app` served on ``sockets`` (already bound) while inside."""
    runner = web.AppRunner(create_metrics_app(), access_log=None)
    await runner.setup()
    try:
        for sock in sockets:
            await web.SockSite(runner, sock).start()
        yield
    finally:
        await runner.cleanup()
