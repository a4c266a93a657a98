"""Operations endpoints: liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
import logging
import os

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from redis.exceptions import RedisClusterException, RedisError

from presence_svc.db.errors import DatabaseUnavailable
from presence_svc.http.openapi import openapi_document
from presence_svc.http.resources import DATABASE, REDIS
from presence_svc.http.wire import respond
from presence_svc.metrics import fold
from presence_svc.multiproc import METRICS_DIR_ENV
from presence_svc.redis.refusal import refusal

__all__ = ["metrics_routes", "routes"]

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
metrics_routes = web.RouteTableDef()
"""Apart from ``routes``: on the API's port, or alone on ``PRESENCE_METRICS_ADDR``."""


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return respond(request, {"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready when Redis takes writes with every script loaded (loading them if it lost
    them) and the database answers (connecting to it if it was down); each check names
    what failed: Redis's refusal code (``OOM``, ``READONLY``...) or the error type."""
    redis = request.app[REDIS]
    checks = {"redis": "ok", "scripts": "ok", "database": "ok"}
    try:
        async with asyncio.timeout(2):
            await redis.check_writable()
            if not await redis.scripts_loaded():
                await redis.load_scripts()
                checks["scripts"] = "reloaded"
    except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
        refused = refusal(exc)
        why = refused.cause.code if refused is not None else type(exc).__name__
        checks["redis"] = checks["scripts"] = f"unavailable: {why}"
    try:
        async with asyncio.timeout(2):
            await request.app[DATABASE].ping()
    except Exception as exc:
        reason = exc.reason if isinstance(exc, DatabaseUnavailable) else type(exc).__name__
        checks["database"] = f"unavailable: {reason}"
    ready = all(v in ("ok", "reloaded") for v in checks.values())
    return respond(request, {"ready": ready, "checks": checks}, status=200 if ready else 503)


@metrics_routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """This process's metrics, or every process's summed under ``serve --processes``."""
    fold()  # this process's tallies of the current loop turn (``metrics``)
    registry = REGISTRY
    if METRICS_DIR_ENV in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    body = generate_latest(registry)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(request.app), dumps=_json_line)


def _json_line(value: object) -> str:
    """JSON ending in a newline, as every JSON answer (``wire.respond``)."""
    return json.dumps(value) + "\n"
