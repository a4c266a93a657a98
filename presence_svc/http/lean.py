"""The hottest writes answered before aiohttp parses them: under ``serve``, a plain
``POST`` to a route of :data:`ROUTES` (the heartbeat and the view) that arrives whole on an
idle keep-alive connection is scanned from the bytes read, answered by the same core as
aiohttp's handler, and its answer written as bytes, without aiohttp's request, routing,
task-per-request and response machinery (about a fifth of the service's CPU per
heartbeat, a third per view). A route is one entry of the table: its exact request line
and a core taking the scanned head: the heartbeat's ``presence.beat`` and the view's
``views.view``. The hot reads (``lean_reads.READS``: the online counts, the presence list,
where-now) are taken the same way: a plain ``GET`` without a body, its line matched against
the route's template, its parameter and query read as aiohttp's router and ``yarl`` read
them, answered by the core the aiohttp handler calls.

Only the plain case is taken (:meth:`LeanPath.scan`): exactly one whole
``POST <route> HTTP/1.1`` with a ``Content-Length`` body, a ``Host``, plain header lines
(as ``shedding`` reads them), none of the headers that change how aiohttp reads or answers
it (``Connection``, ``Transfer-Encoding``, ``Expect``, ``Upgrade``, ``Content-Encoding``), no
header aiohttp refuses twice given twice, and a head aiohttp's limits take. Anything else
goes to aiohttp untouched. The answer is aiohttp's bytes (``tests/http/test_lean.py``
compares them), counted and timed as ``edge`` counts them, behind the same requests gate.

``shedding``'s protocol holds what else the connection sends while the answer is under way
and gives it to aiohttp afterwards, in order.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Final, TypeVar

from aiohttp import web
from aiohttp.helpers import parse_content_type, rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE

from presence_svc import metrics
from presence_svc.db.deadline import REQUEST_BUDGET_S
from presence_svc.errors import problem_for
from presence_svc.http.lean_reads import METHOD as _READ
from presence_svc.http.lean_reads import READS, ReadHead, ReadLines
from presence_svc.http.presence import beat
from presence_svc.http.resources import SETTINGS
from presence_svc.http.views import view
from presence_svc.http.wire import Asked, Body

__all__ = [
    "PLAIN_HEAD",
    "ROUTES",
    "Core",
    "Head",
    "LeanHead",
    "LeanPath",
    "framing",
    "render",
]

T = TypeVar("T")

Core = Callable[[web.Application, Asked], Awaitable[tuple[bytes, str]]]
"""A route's core, shared with its aiohttp handler: the answer's body and media type."""
ROUTES: Final[dict[str, Core]] = {"/v1/heartbeat": beat, "/v1/views": view}
"""The ``POST`` routes answered here, each by the core its aiohttp handler also calls."""
_METHOD: Final = "POST"
_LONGEST_LINE = max(len(f"POST {path} HTTP/1.1\r\n") for path in ROUTES)
_MAX_HEAD = 8190
"""aiohttp's limit on one header line; a longer head goes to aiohttp, which judges it."""
_MAX_LINES = 100
"""Below aiohttp's 128 headers: a head with more goes to aiohttp."""
# A head of plain header lines only: each ``CRLF name: value``. Anything else (a bare LF, a
# space before the colon, a folded line, a control byte) may hide a header from a scan of
# the head; aiohttp answers those itself (400). Shared with ``shedding``'s scan.
PLAIN_HEAD = re.compile(rb"(?:\r\n[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\x00-\x08\x0a-\x1f\x7f]*)*")
# The headers that change how aiohttp reads the request or answers it: a head with one
# goes to aiohttp.
_DECLINED = frozenset(
    {
        b"connection",
        b"transfer-encoding",
        b"expect",
        b"upgrade",
        b"content-encoding",
        b"sec-websocket-key1",
        b"origin",
    }
)
# The headers the routes read, those aiohttp takes once only (a second one is its 400),
# and the declined ones.
_FIELDS = (
    frozenset(
        {
            b"authorization",
            b"accept",
            b"content-type",
            b"content-length",
            b"host",
            b"content-location",
            b"content-range",
            b"etag",
            b"max-forwards",
            b"server",
            b"user-agent",
        }
    )
    | _DECLINED
)
# Each header line as ``(name, value)``, its value up to the next CR. With no control byte
# but those of the CRLFs, a head is ``PLAIN_HEAD`` exactly when one of these starts at
# each of its CRLFs (``_plain_fields``): the same test, without ``PLAIN_HEAD``'s check of
# every value byte against a class (most of the scan's instructions).
_LINES = re.compile(rb"\r\n([!#$%&'*+.^_`|~0-9A-Za-z-]+):([^\r]*)")
_NOT_CONTROL = bytes(b for b in range(256) if b == 0x09 or 0x20 <= b < 0x7F or b > 0x7F)
"""The bytes a plain head's lines may hold: ``PLAIN_HEAD``'s value class."""
_CRLFS = tuple(b"\r\n" * n for n in range(_MAX_LINES + 1))
_OCTET_STREAM = "application/octet-stream"
"""aiohttp's content type of a request without one."""

# Any request line framing may follow (``framing``): a method, a target, HTTP/1.1.
_ANY_LINE = re.compile(rb"[A-Z]+ [\x21-\x7e]+ HTTP/1\.1\r\n")
_FRAMES = re.compile(rb"\r\n(?:(content-length)|transfer-encoding|upgrade):([^\r]*)", re.I)


def framing(data: bytes) -> int:
    """How many body bytes the last request in ``data`` still lacks, if ``data`` is plain
    HTTP/1.1 requests back to back (0: they end where ``data`` ends); else -1 (a head cut
    short, a chunked body, anything the scan cannot frame as aiohttp's parser does)."""
    at, size = 0, len(data)
    while at < size:
        line = _ANY_LINE.match(data, at)
        if line is None:
            return -1
        head = line.end() - 2
        end = data.find(b"\r\n\r\n", head)
        if end < 0 or PLAIN_HEAD.fullmatch(data, head, end) is None:
            return -1
        length = -1
        for is_length, value in _FRAMES.findall(data, head, end):
            value = value.strip(b" \t")
            if not is_length or length >= 0 or not value.isdigit() or len(value) > 18:
                return -1
            length = int(value)
        at = end + 4 + max(0, length)
    return at - size


class _Route:
    """One route of :data:`ROUTES` as the scan finds it: its path, for metrics and logs,
    and its core."""

    __slots__ = ("core", "path")

    def __init__(self, path: str, core: Core) -> None:
        self.path = path
        self.core = core


class LeanHead:
    """A request as :meth:`LeanPath.scan` read it: what its core and its log read."""

    __slots__ = ("accept", "authorization", "content_type", "path", "raw", "route")

    method: Final = _METHOD

    def __init__(
        self,
        route: _Route,
        authorization: str | None,
        content_type: str,
        accept: str | None,
        raw: bytes,
    ) -> None:
        self.route = route
        self.path = route.path
        self.authorization = authorization
        self.content_type = content_type
        self.accept = accept
        self.raw = raw

    async def body(self, kind: Body[T]) -> T:
        return kind.parse(self.content_type, self.raw)

    def ask(self, app: web.Application) -> Awaitable[tuple[bytes, str]]:
        """Its route's core, asked for its answer."""
        return self.route.core(app, self)


Head = LeanHead | ReadHead
"""A request the lean path takes: a write of :data:`ROUTES` or a read of ``READS``."""


def _plain_fields(data: bytes, head: int, end: int) -> dict[bytes, bytes] | None:
    """The fields of the head between ``head`` (the request line's CRLF) and ``end`` the
    routes read (by lowercase name), if it is plain lines within aiohttp's limits
    (``PLAIN_HEAD``), none of them declined or given twice; else None."""
    if end > _MAX_HEAD:
        return None
    lines = _LINES.findall(data, head, end)
    # One line found at each CRLF, and no CR, LF or other control byte but theirs: as
    # many CRLFs as lines, each starting one (a line ends at the next CR).
    if (
        len(lines) > _MAX_LINES
        or data[head:end].translate(None, _NOT_CONTROL) != _CRLFS[len(lines)]
    ):
        return None
    seen: dict[bytes, bytes] = {}
    for name, value in lines:
        name = name.lower()
        if name in _FIELDS:
            if name in seen or name in _DECLINED:
                return None
            seen[name] = value.strip(b" \t")
    return seen


def _scan(lines: dict[bytes, _Route], reads: ReadLines | None, data: bytes) -> Head | None:
    head = data.find(b"\r\n", 0, _LONGEST_LINE)
    route = lines.get(data[: head + 2]) if head > 0 else None
    if route is None:
        return _scan_read(reads, data) if reads is not None else None
    end = data.find(b"\r\n\r\n", head)
    seen = None if end < 0 else _plain_fields(data, head, end)
    if seen is None:
        return None
    length = seen.get(b"content-length")
    if (
        length is None
        or b"host" not in seen
        or not length.isdigit()
        or end + 4 + int(length) != len(data)
    ):
        return None
    try:
        authorization = seen.get(b"authorization")
        accept = seen.get(b"accept")
        content_type = seen.get(b"content-type")
        return LeanHead(
            route,
            None if authorization is None else authorization.decode("ascii"),
            _OCTET_STREAM
            if content_type is None
            else parse_content_type(content_type.decode("ascii"))[0],
            None if accept is None else accept.decode("ascii"),
            data[end + 4 :],
        )
    except UnicodeDecodeError:
        return None  # aiohttp reads such values its own way


def _scan_read(reads: ReadLines, data: bytes) -> ReadHead | None:
    """A plain ``GET`` of a read (``lean_reads``), whole, without a body."""
    line = reads.match(data)
    if line is None:
        return None
    route, target, value, head = line
    end = data.find(b"\r\n\r\n", head)
    seen = None if end < 0 or end + 4 != len(data) else _plain_fields(data, head, end)
    if seen is None or b"host" not in seen or b"content-length" in seen:
        return None
    try:
        authorization = seen.get(b"authorization")
        accept = seen.get(b"accept")
        return ReadHead(
            route,
            target,
            value,
            None if authorization is None else authorization.decode("ascii"),
            None if accept is None else accept.decode("ascii"),
        )
    except UnicodeDecodeError:
        return None  # aiohttp reads such values its own way


_OK_JSON = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
_OK_MSGPACK = b"HTTP/1.1 200 OK\r\nContent-Type: application/msgpack\r\nContent-Length: "
_SERVER = f"\r\nServer: {SERVER_SOFTWARE}\r\n\r\n".encode()


def _ok(body: bytes, media_type: str) -> bytes:
    """The bytes aiohttp writes for ``LeanAnswer.ok(body, media_type)``."""
    start = _OK_MSGPACK if media_type == "application/msgpack" else _OK_JSON
    date = rfc822_formatted_time().encode()
    return b"".join((start, str(len(body)).encode(), b"\r\nDate: ", date, _SERVER, body))


def render(response: web.Response) -> bytes:
    """The bytes aiohttp writes for ``response`` (a bytes body, not yet prepared) to a plain
    HTTP/1.1 keep-alive ``POST`` of an app without prepare hooks: its headers in order, then
    the ``Content-Length``, ``Date`` and ``Server`` aiohttp adds."""
    body = response.body
    assert isinstance(body, bytes)
    headers = list(response.headers.items())
    names = {name.lower() for name, _ in headers}
    if "content-length" not in names:
        headers.append(("Content-Length", str(len(body))))
    if "date" not in names:
        headers.append(("Date", rfc822_formatted_time()))
    if "server" not in names:
        headers.append(("Server", SERVER_SOFTWARE))
    lines = [f"HTTP/1.1 {response.status} {response.reason}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _served(app: web.Application, method: str, table: Iterable[str]) -> list[str]:
    """The paths of ``table`` the app serves with ``method``."""
    routes = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
    }
    return [path for path in table if (method, path) in routes]


class LeanPath:
    """The lean answers of :data:`ROUTES` for one app (see the module's docstring)."""

    __slots__ = ("_app", "_budget_s", "_lines", "_reads")

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._budget_s = app[SETTINGS].db_request_timeout_s
        self._lines = {
            f"POST {path} HTTP/1.1\r\n".encode(): _Route(path, ROUTES[path])
            for path in _served(app, _METHOD, ROUTES)
        }
        reads = _served(app, _READ, READS)
        self._reads = ReadLines(reads) if reads else None

    @staticmethod
    def usable(app: web.Application, handler_cancellation: bool) -> bool:
        """Whether the app's routes may be answered here: its settings trace no spans
        (a span per request is aiohttp's handler's), no prepare hook adds headers to
        answers (CORS), its handlers are not cancelled when a client leaves, and it serves
        one of :data:`ROUTES` at least."""
        if SETTINGS not in app or app[SETTINGS].otel or app.on_response_prepare:
            return False
        served = _served(app, _METHOD, ROUTES) or _served(app, _READ, READS)
        return not handler_cancellation and bool(served)

    def scan(self, data: bytes) -> Head | None:
        """The request ``data`` holds, if it holds exactly one plain whole one to a route
        answered here."""
        return _scan(self._lines, self._reads, data)

    async def answer(self, head: Head) -> bytes:
        """The answer's bytes; counted and timed as ``edge`` does (the caller holds the
        place in the requests gate)."""
        started = time.perf_counter()
        REQUEST_BUDGET_S.set(self._budget_s)
        try:
            data = _ok(*await head.ask(self._app))
            status = 200
        except Exception as exc:
            response = problem_for(head, exc)
            data = render(response)
            status = response.status
        elapsed = time.perf_counter() - started
        metrics.observe_request(head.route.path, head.method, status, elapsed)
        return data
