"""The hot reads of the lean path (``http/lean``): their table, and their request lines read
as aiohttp's router reads them.

A read is ``GET`` of a route with one path parameter and an optional query (the online
counts, the presence list, where-now), answered by the core its aiohttp handler also calls.
The line is taken only when aiohttp would read the same out of it: a path of plain
characters (no ``%``: aiohttp's router would match the decoded path, and no ``.`` or
``..`` segment for a parameter), a query of the characters a query may hold, no fragment.
The query is parsed by ``yarl``, as aiohttp's parser hands it over (``encoded``), so its
values are aiohttp's. Anything else is aiohttp's.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from aiohttp import web
from multidict import MultiDict, MultiDictProxy, MultiMapping
from yarl import URL

from presence_svc.http.presence import online_counts, presence_page
from presence_svc.http.where import whereabouts
from presence_svc.http.wire import Read

__all__ = ["READS", "ReadCore", "ReadHead", "ReadLines", "ReadRoute"]

ReadCore = Callable[[web.Application, Read], Awaitable[tuple[bytes, str]]]
"""A read's core, shared with its aiohttp handler: the answer's body and media type."""
READS: Final[dict[str, ReadCore]] = {
    "/v1/artifacts/{artifactId}/online": online_counts,
    "/v1/artifacts/{artifactId}/presence": presence_page,
    "/v1/users/{userId}/presence": whereabouts,
}
"""The ``GET`` routes answered by the lean path, by path template (aiohttp's ``canonical``),
each with one parameter."""
METHOD: Final = "GET"

_SEGMENT = rb"[A-Za-z0-9._~!$&'()*+,;=:@-]+"
"""A parameter's characters: a path segment's (RFC 3986 ``pchar``) but ``%``; aiohttp's
router matches ``[^{}/]+``, which they all are."""
_QUERY = rb"[A-Za-z0-9._~!$&'()*+,;=:@/?%-]*"
"""A query's characters (RFC 3986): what the parser keeps as it is for ``yarl`` to parse."""
_PARAM = re.compile(r"\{([_a-zA-Z][_a-zA-Z0-9]*)\}")
_DOTS = (b".", b"..")
_NO_QUERY: Final[MultiMapping[str]] = MultiDictProxy(MultiDict())


class ReadRoute:
    """A route of :data:`READS`: its template (for metrics), its parameter's name and its
    core."""

    __slots__ = ("core", "name", "path")

    def __init__(self, path: str, core: ReadCore) -> None:
        (self.name,) = _PARAM.findall(path)
        self.path = path
        self.core = core


class ReadHead:
    """A read as the lean path scanned it: what its core and its log read."""

    __slots__ = ("accept", "authorization", "match_info", "path", "query", "route")

    method: Final = METHOD

    def __init__(
        self,
        route: ReadRoute,
        target: bytes,
        value: str,
        authorization: str | None,
        accept: str | None,
    ) -> None:
        path, _, query = target.decode().partition("?")
        self.route = route
        self.path = path  # no ``%`` in it: as aiohttp decodes it
        self.match_info: Mapping[str, str] = {route.name: value}
        # parsed by the same code as aiohttp's (``yarl`` keeps the URLs it built: the same
        # query again is not parsed again)
        self.query: MultiMapping[str] = (
            URL.build(query_string=query, encoded=True).query if query else _NO_QUERY
        )
        self.authorization = authorization
        self.accept = accept

    def ask(self, app: web.Application) -> Awaitable[tuple[bytes, str]]:
        """Its route's core, asked for its answer."""
        return self.route.core(app, self)


class ReadLines:
    """The request lines of the reads an app serves, matched by one regex."""

    __slots__ = ("_line", "_routes")

    def __init__(self, paths: list[str]) -> None:
        self._routes = [ReadRoute(path, READS[path]) for path in paths]
        alternatives = b"|".join(_pattern(route.path) for route in self._routes)
        self._line = re.compile(
            rb"GET (?:" + alternatives + rb")(?:\?(" + _QUERY + rb"))? HTTP/1\.1\r\n"
        )

    def match(self, data: bytes) -> tuple[ReadRoute, bytes, str, int] | None:
        """The route, target and parameter of the request line ``data`` starts with, and
        where its head's lines start; None when it is not a plain line to a read."""
        line = self._line.match(data)
        if line is None:
            return None
        groups = line.groups()  # one group per route, then the query
        which = next(i for i, value in enumerate(groups) if value is not None)
        route, value = self._routes[which], groups[which]
        if value in _DOTS:
            return None  # a dot segment: another yarl may resolve it
        start = line.end() - 2
        return route, data[4 : start - 9], value.decode(), start


def _pattern(path: str) -> bytes:
    """``path``'s template as a regex: its parameter a group of :data:`_SEGMENT`."""
    before, after = _PARAM.split(path)[::2]
    return re.escape(before.encode()) + b"(" + _SEGMENT + b")" + re.escape(after.encode())
