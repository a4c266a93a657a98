"""CORS for browser apps on other origins: preflight answers and headers on every answer.

Only the origins in ``PRESENCE_CORS_ORIGINS`` are allowed (``*``: any). Tokens travel in the
``Authorization`` header, never in cookies, so credentials are not allowed.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from presence_svc.http.resources import SETTINGS

__all__ = ["ALLOWED_HEADERS", "preflight", "setup_cors"]

ALLOWED_HEADERS: Final = "Authorization, Content-Type, Accept, Last-Event-ID"
_METHODS: Final = "GET, POST, PUT, DELETE, OPTIONS"
_EXPOSED: Final = "Retry-After, Content-Type, RateLimit, RateLimit-Policy"
_MAX_AGE: Final = "600"


def _allowed(request: web.Request) -> str | None:
    """The origin to echo back, or None when the request's origin is not allowed."""
    origin = request.headers.get("Origin")
    origins = request.app[SETTINGS].cors_origins
    if origin is None or not origins:
        return None
    return origin if "*" in origins or origin in origins else None


def preflight(request: web.Request) -> web.Response | None:
    """The answer to a preflight (OPTIONS with Access-Control-Request-Method), given before
    routing; None for any other request."""
    if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
        return None
    origin = _allowed(request)
    response = web.Response(status=204)
    if origin is not None:
        response.headers["Access-Control-Allow-Methods"] = _METHODS
        response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        response.headers["Access-Control-Max-Age"] = _MAX_AGE
    return response


async def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Runs before any answer's headers are sent, streamed ones (events) included."""
    response.headers.add("Vary", "Origin")
    origin = _allowed(request)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = _EXPOSED


def setup_cors(app: web.Application) -> None:
    """Headers on every answer, only when some origin is allowed: without any, the hook
    would add nothing, and aiohttp skips the signal altogether when it has no receiver."""
    if app[SETTINGS].cors_origins:
        app.on_response_prepare.append(_add_headers)
