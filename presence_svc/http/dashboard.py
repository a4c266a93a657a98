"""The dashboard page: static files shipped inside the package, served with a strict CSP.

The page holds no secret: the operator pastes a ``dashboard`` token (or passes it in the URL
fragment), and the page calls the same public API as any other client.
"""

from __future__ import annotations

from importlib import resources
from typing import Final

from aiohttp import web

from presence_svc.errors import NotFound

__all__ = ["CSP", "routes"]

routes = web.RouteTableDef()

CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_TYPES: Final = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "style.css": "text/css",
}


def _asset(name: str) -> web.Response:
    if name not in _TYPES:
        raise NotFound(f"no dashboard file {name!r}")
    body = _STATIC.joinpath(name).read_bytes()
    response = web.Response(body=body, content_type=_TYPES[name], charset="utf-8")
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-cache"
    return response


_STATIC = resources.files("presence_svc").joinpath("http", "static", "dashboard")


@routes.get("/dashboard")
async def dashboard(request: web.Request) -> web.Response:
    return _asset("index.html")


@routes.get("/dashboard/{file}")
async def dashboard_file(request: web.Request) -> web.Response:
    return _asset(request.match_info["file"])
