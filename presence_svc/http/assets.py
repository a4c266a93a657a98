"""Files shipped inside the package and served with a long cache and an ``ETag``: the browser
SDK's single-file build and its type declarations, and the favicon.

The SDK files are the build of ``clients/js`` (``npm run vendor``), committed so that a wheel
installed without node serves them; a test checks they match a fresh build of the sources.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Final

from aiohttp import web

__all__ = ["SDK_PATH", "routes"]

routes = web.RouteTableDef()

SDK_PATH: Final = "/sdk/v1"
# The SDK paths change with the SDK's major version only; a page that must pick up a new
# build before the year is out adds a query (``?v=<service version>``), which is ignored here.
_IMMUTABLE: Final = "public, max-age=31536000, immutable"
_STATIC = resources.files("presence_svc").joinpath("http", "static")


@dataclass(frozen=True)
class _Asset:
    file: str
    content_type: str
    cache_control: str
    charset: str | None = "utf-8"


_JS: Final = _Asset("sdk/presence.min.js", "text/javascript", _IMMUTABLE)
_TYPES: Final = _Asset("sdk/presence.min.d.ts", "application/typescript", _IMMUTABLE)
_ICON: Final = _Asset("favicon.ico", "image/x-icon", "public, max-age=86400", charset=None)


@functools.cache
def _load(asset: _Asset) -> tuple[bytes, str]:
    """The file's bytes and its strong ETag, read once per process (not at import time)."""
    body = _STATIC.joinpath(asset.file).read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 If-None-Match: weak comparison over a list of tags, or ``*``."""
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


def _serve(request: web.Request, asset: _Asset) -> web.Response:
    body, etag = _load(asset)
    headers = {
        "ETag": etag,
        "Cache-Control": asset.cache_control,
        "X-Content-Type-Options": "nosniff",
        # A public file: pages on any origin may load it as a module script (a CORS fetch).
        "Access-Control-Allow-Origin": "*",
    }
    if _matches(request.headers.get("If-None-Match", ""), etag):
        return web.Response(status=304, headers=headers)
    response = web.Response(
        body=body, content_type=asset.content_type, charset=asset.charset, headers=headers
    )
    return response


@routes.get(SDK_PATH + "/presence.js")
async def sdk_module(request: web.Request) -> web.Response:
    response = _serve(request, _JS)
    # Deno and esm.sh's convention: where the module's types are.
    response.headers["X-TypeScript-Types"] = SDK_PATH + "/presence.d.ts"
    return response


@routes.get(SDK_PATH + "/presence.d.ts")
async def sdk_types(request: web.Request) -> web.Response:
    return _serve(request, _TYPES)


@routes.get("/favicon.ico")
async def favicon(request: web.Request) -> web.Response:
    return _serve(request, _ICON)
