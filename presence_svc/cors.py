"""CORS for browser apps on other origins: preflight answers and headers on every answer.

Only the origins in ``PRESENCE_CORS_ORIGINS`` are allowed (``*``: any). Tokens travel in the
``Authorization`` header, never in cookies, so credentials are not allowed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from presence_svc.resources import SETTINGS

__all__ = ["ALLOWED_HEADERS", "cors_middleware", "setup_cors"]

ALLOWED_HEADERS: Final = "Authorization, Content-Type, Accept, Last-Event-ID"
_METHODS: Final = "GET, POST, PUT, DELETE, OPTIONS"
_EXPOSED: Final = "Retry-After, Content-Type"
_MAX_AGE: Final = "600"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _allowed(request: web.Request) -> str | None:
    """The origin to echo back, or None when the request's origin is not allowed."""
    origin = request.headers.get("Origin")
    origins = request.app[SETTINGS].cors_origins
    if origin is None or not origins:
        return None
    return origin if "*" in origins or origin in origins else None


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer a preflight (OPTIONS with Access-Control-Request-Method) before routing."""
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        origin = _allowed(request)
        response = web.Response(status=204)
        if origin is not None:
            response.headers["Access-Control-Allow-Methods"] = _METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = _MAX_AGE
        return response
    return await handler(request)


async def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Runs before any answer's headers are sent, streamed ones (events) included."""
    if not request.app[SETTINGS].cors_origins:
        return
    response.headers.add("Vary", "Origin")
    origin = _allowed(request)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = _EXPOSED


def setup_cors(app: web.Application) -> None:
    app.on_response_prepare.append(_add_headers)
