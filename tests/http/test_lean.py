"""The lean path (``http/lean.py``) under ``serve``'s protocol: a plain heartbeat or view
arriving whole on an idle connection is answered before aiohttp parses it, with the bytes
aiohttp's handler sends for the same request (compared here against the app served by
aiohttp's own runner, ``Date`` aside), counted in the same metrics, behind the same gate;
anything else (pipelined, split, odd) is aiohttp's, in order."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import pytest
import redis
import uvloop
from aiohttp import web
from aiohttp.test_utils import TestServer

from presence_svc.auth import Scope, TokenCodec
from presence_svc.http import lean
from presence_svc.http.admission import GATE
from presence_svc.http.app import create_app
from presence_svc.http.lean import LeanPath, framing
from presence_svc.http.shedding import SheddingRunner, lean_compatible
from presence_svc.ratelimits import parse_rate_limits
from presence_svc.settings import Settings
from tests.conftest import SECRET, free_port

T = TypeVar("T")
_DATE = re.compile(rb"\r\nDate: [^\r]*")
HEARTBEATS_200 = 'presence_http_requests_total{method="POST",route="/v1/heartbeat",status="200"}'


@dataclass(frozen=True)
class Route:
    """A route of the lean path, and the least body it takes besides ``artifactId``."""

    path: str
    fields: dict[str, str]

    @property
    def answered_200(self) -> str:
        """The metric counting its 200s."""
        return f'presence_http_requests_total{{method="POST",route="{self.path}",status="200"}}'

    def body(self, artifact: str = "doc-1", **more: Any) -> dict[str, Any]:
        return {"artifactId": artifact, **self.fields, **more}


HEARTBEAT = Route("/v1/heartbeat", {"sessionId": "tab-00001"})
VIEW = Route("/v1/views", {"versionId": "v-1"})
ROUTES = {
    name: route
    for name, route in {"heartbeat": HEARTBEAT, "view": VIEW}.items()
    if route.path in lean.ROUTES
}
"""The routes ``lean`` answers (a view is its when ``lean.ROUTES`` has it: the tests follow)."""


@dataclass
class Served:
    """``create_app(settings)`` run by ``serve``'s runner (lean), and by aiohttp's (plain)."""

    runner: SheddingRunner
    port: int
    plain_port: int

    @property
    def app(self) -> web.Application:
        return self.runner.app

    @property
    def parsed(self) -> int:
        """Requests aiohttp has parsed and routed on the lean server so far."""
        server = self.runner.server
        assert server is not None
        return server.requests_count


Serve = Callable[..., Awaitable[Served]]


@pytest.fixture
async def serve(
    settings: Settings, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> AsyncIterator[Serve]:
    runners: list[SheddingRunner] = []

    async def start(keepalive_timeout: float = 75.0, **changes: Any) -> Served:
        changed = settings.replace(**changes)
        runner = SheddingRunner(
            create_app(changed), access_log=None, keepalive_timeout=keepalive_timeout
        )
        await runner.setup()
        runners.append(runner)
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        plain = await aiohttp_server(create_app(changed))
        assert plain.port is not None
        return Served(runner, port, plain.port)

    yield start
    for runner in runners:
        await runner.cleanup()


def token(user: str, artifacts: list[str] | None = None) -> str:
    return TokenCodec(SECRET).issue(user, scope=Scope.CLIENT, artifacts=artifacts, ttl_s=600)


def post(
    route: Route,
    user: str | None = "alice",
    body: bytes | None = None,
    *,
    artifact: str = "doc-1",
    headers: str = "Content-Type: application/json\r\n",
    artifacts: list[str] | None = None,
    **fields: Any,
) -> bytes:
    if body is None:
        body = json.dumps(route.body(artifact, **fields)).encode()
    auth = f"Authorization: Bearer {token(user, artifacts)}\r\n" if user else ""
    return (
        f"POST {route.path} HTTP/1.1\r\nHost: test\r\n{auth}{headers}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def heartbeat(
    user: str | None = "alice",
    body: bytes | None = None,
    *,
    session: str = "tab-00001",
    headers: str = "Content-Type: application/json\r\n",
    artifacts: list[str] | None = None,
) -> bytes:
    return post(HEARTBEAT, user, body, headers=headers, artifacts=artifacts, sessionId=session)


class Connection:
    """One keep-alive connection, answers read one by one."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self) -> bytes:
        """The next whole answer, its ``Date`` masked."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 30)
        length = re.search(rb"\r\nContent-Length: (\d+)", head)
        assert length is not None, head
        body = await asyncio.wait_for(self.reader.readexactly(int(length.group(1))), 30)
        return _DATE.sub(b"\r\nDate: -", head + body)

    def close(self) -> None:
        self.writer.close()


async def ask(port: int, data: bytes) -> bytes:
    connection = await Connection.open(port)
    try:
        await connection.send(data)
        return await connection.answer()
    finally:
        connection.close()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def body_of(answer: bytes) -> Any:
    head, _, body = answer.partition(b"\r\n\r\n")
    if b"msgpack" in head:
        return msgspec.msgpack.decode(body)
    return json.loads(body)


async def metric(port: int, name: str) -> float:
    connection = await Connection.open(port)
    try:
        await connection.send(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        text = (await connection.answer()).decode()
    finally:
        connection.close()
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


Case = Callable[[Route, str], bytes]
"""A request to a route, on an artifact (the lean and the plain server each get their own,
of the same length, so that both are first there)."""
_PACK = "Content-Type: application/json\r\nAccept: application/msgpack\r\n"
CASES: dict[str, tuple[Case, int]] = {
    "200 JSON": (lambda r, a: post(r, "u-json", artifact=a), 200),
    "200 msgpack": (lambda r, a: post(r, "u-pack", artifact=a, headers=_PACK), 200),
    "200 msgpack body": (
        lambda r, a: post(
            r,
            "u-pack-in",
            msgspec.msgpack.encode(r.body(a)),
            headers="Content-Type: application/msgpack; charset=x\r\n",
        ),
        200,
    ),
    "400 a bad field": (lambda r, a: post(r, "u-bad", artifact="doc 1"), 400),
    "400 a missing field": (
        lambda r, a: post(r, "u-miss", json.dumps({"artifactId": a}).encode()),
        400,
    ),
    "400 not JSON": (lambda r, a: post(r, "u-junk", b"{not json"), 400),
    "400 no body": (lambda r, a: post(r, "u-empty", b""), 400),
    "401 no token": (lambda r, a: post(r, None, artifact=a), 401),
    "401 a bad token": (
        lambda r, a: post(
            r,
            None,
            artifact=a,
            headers="Authorization: Bearer nonsense\r\nContent-Type: application/json\r\n",
        ),
        401,
    ),
    "401 not bearer": (
        lambda r, a: post(
            r,
            None,
            artifact=a,
            headers="Authorization: Basic eDp5\r\nContent-Type: application/json\r\n",
        ),
        401,
    ),
    "403 another artifact": (lambda r, a: post(r, "u-other", artifacts=["doc-2"]), 403),
    "415 text": (
        lambda r, a: post(r, "u-text", artifact=a, headers="Content-Type: text/plain\r\n"),
        415,
    ),
    "415 no content type": (lambda r, a: post(r, "u-none", artifact=a, headers=""), 415),
}
HEARTBEAT_CASES: dict[str, tuple[Case, int]] = {
    "200 with state": (lambda r, a: post(r, "u-state", artifact=a, state={"a": 1}), 200),
    "400 state too large": (lambda r, a: post(r, "u-big", state={"s": "x" * 1100}), 400),
}


def _first_there(route: Route, answer: bytes) -> None:
    """A 200's body says the request was the first on its artifact."""
    if route is HEARTBEAT:
        assert body_of(answer)["online"] == 1
    else:
        assert body_of(answer) == {"counted": True, "views": 1, "uniqueViewers": 1}


@pytest.mark.parametrize(
    ("route", "case"),
    [(name, case) for name in ROUTES for case in CASES]
    + [("heartbeat", case) for case in HEARTBEAT_CASES],
)
async def test_a_plain_request_gets_aiohttps_bytes_without_aiohttp(
    serve: Serve, route: str, case: str
) -> None:
    served = await serve()
    build, status = {**CASES, **HEARTBEAT_CASES}[case]
    parsed = served.parsed
    lean = await ask(served.port, build(ROUTES[route], "doc-L"))
    assert served.parsed == parsed, "aiohttp parsed the request: the lean path did not take it"
    plain = await ask(served.plain_port, build(ROUTES[route], "doc-P"))
    assert lean == plain.replace(b"doc-P", b"doc-L")
    assert status_of(lean) == status, lean
    if status == 200:
        _first_there(ROUTES[route], lean)
    else:
        assert b"Content-Type: application/problem+json" in lean
    if status == 401:
        assert b'\r\nWWW-Authenticate: Bearer realm="presence-svc"\r\n' in lean


async def test_another_users_session_is_the_same_409(serve: Serve) -> None:
    served = await serve()
    assert status_of(await ask(served.port, heartbeat("owner"))) == 200
    parsed = served.parsed
    lean = await ask(served.port, heartbeat("intruder"))
    assert served.parsed == parsed
    assert lean == await ask(served.plain_port, heartbeat("intruder"))
    assert status_of(lean) == 409


@pytest.mark.parametrize("route", list(ROUTES))
async def test_a_body_over_the_limit_is_413_either_way(serve: Serve, route: str) -> None:
    served = await serve()
    body = json.dumps(ROUTES[route].body(x="x" * 17_000)).encode()
    request = post(ROUTES[route], "u-huge", body)
    parsed = served.parsed
    lean = await ask(served.port, request)
    assert served.parsed == parsed
    assert lean == await ask(served.plain_port, request)
    assert status_of(lean) == 413
    assert body_of(lean)["detail"] == "request body is larger than 16384 bytes"


@pytest.mark.parametrize(("route", "limit"), [(name, name) for name in ROUTES])
async def test_past_the_rate_limit_the_429_and_its_headers_are_aiohttps(
    serve: Serve, route: str, limit: str
) -> None:
    served = await serve(rate_limits=parse_rate_limits(f"{limit}=1/m:burst=1"))
    answers = []
    for port, user in ((served.port, "rl-lean"), (served.plain_port, "rl-plain")):
        connection = await Connection.open(port)
        await connection.send(post(ROUTES[route], user, artifact=f"{user}-1"))
        assert status_of(await connection.answer()) == 200
        parsed = served.parsed
        await connection.send(post(ROUTES[route], user, artifact=f"{user}-2"))
        answers.append(await connection.answer())
        if port == served.port:
            assert served.parsed == parsed
        connection.close()
    lean, plain = answers
    assert lean == plain
    assert status_of(lean) == 429
    for header in (b"\r\nRetry-After: ", b"\r\nRateLimit: ", b"\r\nRateLimit-Policy: "):
        assert header in lean


@pytest.mark.parametrize("route", list(ROUTES))
async def test_a_paused_redis_is_the_same_503_with_retry_after(
    serve: Serve, sync_redis: redis.Redis, route: str
) -> None:
    served = await serve(redis_timeout_s=0.2)
    assert status_of(await ask(served.port, post(ROUTES[route], artifact="doc-0"))) == 200
    request = post(ROUTES[route])  # scripts loaded, connected
    sync_redis.execute_command("CLIENT", "PAUSE", 1500, "ALL")
    parsed = served.parsed
    lean, plain = await asyncio.gather(ask(served.port, request), ask(served.plain_port, request))
    assert served.parsed == parsed
    assert lean == plain
    assert status_of(lean) == 503
    assert b"\r\nRetry-After: " in lean


async def test_pipelined_and_held_requests_are_answered_in_order(
    serve: Serve, sync_redis: redis.Redis
) -> None:
    served = await serve()
    connection = await Connection.open(served.port)
    # Two in one write: aiohttp's, answered in order.
    parsed = served.parsed
    await connection.send(heartbeat(session="tab-00001") + heartbeat(session="tab-00002"))
    first, second = await connection.answer(), await connection.answer()
    assert [body_of(first)["sessions"], body_of(second)["sessions"]] == [1, 2]
    assert served.parsed == parsed + 2
    # One answered here while the next arrives (Redis paused: the first is still under
    # way), then a probe: held, and given to aiohttp after the first's answer, in order.
    sync_redis.execute_command("CLIENT", "PAUSE", 300, "ALL")
    await connection.send(heartbeat(session="tab-00003"))
    await asyncio.sleep(0.1)
    await connection.send(heartbeat(session="tab-00004"))
    await connection.send(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
    answers = [await connection.answer() for _ in range(3)]
    assert [body_of(answer).get("sessions") for answer in answers[:2]] == [3, 4]
    assert status_of(answers[2]) == 200
    # and the connection is between requests again: the next one is answered here
    parsed = served.parsed
    await connection.send(heartbeat(session="tab-00005"))
    assert body_of(await connection.answer())["sessions"] == 5
    assert served.parsed == parsed
    connection.close()


async def test_a_request_split_over_two_reads_is_aiohttps_and_the_next_whole_one_lean(
    serve: Serve,
) -> None:
    served = await serve()
    connection = await Connection.open(served.port)
    request = heartbeat(session="tab-00001")
    head = request.index(b"\r\n\r\n") + 4
    parsed = served.parsed
    await connection.send(request[:head])  # the head, then the body a moment later
    await asyncio.sleep(0.1)
    await connection.send(request[head:])
    assert status_of(await connection.answer()) == 200
    assert served.parsed == parsed + 1
    await connection.send(heartbeat(session="tab-00002"))
    assert body_of(await connection.answer())["sessions"] == 2
    assert served.parsed == parsed + 1  # aiohttp's parser was between requests: lean
    # A head cut in two: from then on this connection is aiohttp's, and still works.
    request = heartbeat(session="tab-00003")
    await connection.send(request[:20])
    await asyncio.sleep(0.1)
    await connection.send(request[20:])
    assert body_of(await connection.answer())["sessions"] == 3
    await connection.send(heartbeat(session="tab-00004"))
    assert body_of(await connection.answer())["sessions"] == 4
    assert served.parsed == parsed + 3
    connection.close()


@pytest.mark.parametrize("route", list(ROUTES))
async def test_both_paths_are_counted_in_the_same_metrics(serve: Serve, route: str) -> None:
    served = await serve()
    counted = ROUTES[route].answered_200
    before = await metric(served.port, counted)
    parsed = served.parsed
    assert status_of(await ask(served.port, post(ROUTES[route], artifact="doc-1"))) == 200
    assert served.parsed == parsed
    odd = post(
        ROUTES[route],
        artifact="doc-2",
        headers="Content-Type: application/json\r\nConnection: keep-alive\r\n",
    )
    assert status_of(await ask(served.port, odd)) == 200
    assert served.parsed == parsed + 1  # a Connection header: aiohttp's
    assert await metric(served.port, counted) == before + 2
    assert served.app[GATE].open == 0


async def test_a_client_gone_mid_heartbeat_leaves_the_gate_empty(
    serve: Serve, sync_redis: redis.Redis
) -> None:
    served = await serve()
    assert status_of(await ask(served.port, heartbeat(session="tab-00001"))) == 200
    gate = served.app[GATE]
    before = await metric(served.port, HEARTBEATS_200)
    sync_redis.execute_command("CLIENT", "PAUSE", 400, "ALL")
    connection = await Connection.open(served.port)
    await connection.send(heartbeat(session="tab-00002"))
    deadline = time.monotonic() + 10
    while gate.open == 0:  # in flight, waiting on the paused Redis
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    connection.close()
    while gate.open or await metric(served.port, HEARTBEATS_200) < before + 1:
        assert time.monotonic() < deadline, "the heartbeat never finished"
        await asyncio.sleep(0.05)
    assert gate.open == 0
    assert gate.pending == 0
    answer = await ask(served.port, heartbeat(session="tab-00003"))
    assert body_of(answer)["sessions"] == 3  # the second was stored, unheard


async def test_keep_alive_deadlines_hold_around_a_lean_answer(
    serve: Serve, sync_redis: redis.Redis
) -> None:
    """A heartbeat that takes longer than the keep-alive timeout is not cut while it waits
    (aiohttp's timer sees a connection waiting for its next request); once answered, the
    connection idle past the timeout is closed."""
    served = await serve(keepalive_timeout=0.2)
    connection = await Connection.open(served.port)
    sync_redis.execute_command("CLIENT", "PAUSE", 600, "ALL")
    parsed = served.parsed
    await connection.send(heartbeat(session="tab-00001"))
    assert status_of(await connection.answer()) == 200
    assert served.parsed == parsed
    try:
        assert await asyncio.wait_for(connection.reader.read(), 10) == b""  # closed when idle
    finally:
        connection.close()


async def test_the_lean_path_is_off_where_answers_differ(serve: Serve) -> None:
    assert lean_compatible()
    on = await serve()
    assert getattr(on.runner.server, "lean", None) is not None
    assert not LeanPath.usable(on.app, handler_cancellation=True)
    # CORS: aiohttp's prepare hook adds its headers to every answer
    cors = await serve(cors_origins=("https://app.example",))
    assert getattr(cors.runner.server, "lean", "absent") is None
    parsed = cors.parsed
    answer = await ask(cors.port, heartbeat())
    assert status_of(answer) == 200
    assert b"\r\nVary: Origin\r\n" in answer
    assert cors.parsed == parsed + 1


@pytest.mark.parametrize(
    ("data", "owed"),
    [
        (heartbeat(), 0),
        (heartbeat() + heartbeat(), 0),
        (heartbeat()[:-5], 5),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 0),
        (heartbeat()[:30], -1),
        (b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", -1),
        (b"GET / HTTP/1.0\r\n\r\n", -1),
        (b"", 0),
    ],
)
def test_framing_follows_where_requests_end(data: bytes, owed: int) -> None:
    assert framing(data) == owed


@pytest.mark.parametrize("digits", [2, 19], ids=["plain-length", "zero-padded-length"])
async def test_a_full_gate_refuses_a_heartbeat_the_lean_path_could_take(
    serve: Serve, digits: int
) -> None:
    """Past the gate, no heartbeat is admitted by the lean path, including one whose
    ``Content-Length`` (zero-padded to 19 digits) the canned refusal's scan does not read:
    aiohttp takes it and ``edge`` refuses it."""
    served = await serve()
    body = json.dumps({"artifactId": "doc-1", "sessionId": "tab-00001"}).encode()
    length = str(len(body)).rjust(digits, "0")
    request = (
        "POST /v1/heartbeat HTTP/1.1\r\nHost: test\r\n"
        f"Authorization: Bearer {token('alice')}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode() + body
    assert status_of(await ask(served.port, request)) == 200  # open: admitted
    served.app[GATE].shedding = True
    try:
        assert status_of(await ask(served.port, request)) == 503
    finally:
        served.app[GATE].shedding = False


@pytest.fixture
def uvloop_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A uvloop event loop in a thread of its own, as ``serve`` runs the app."""
    loop = uvloop.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


async def test_after_aiohttp_answered_on_a_connection_the_next_request_is_lean(
    settings: Settings, uvloop_loop: asyncio.AbstractEventLoop
) -> None:
    """Under uvloop a client's next request is often read before aiohttp's ``start`` has
    looped back to wait for it (more so under load): it is between requests all the same,
    and taken here. Before, such a request went to aiohttp, and the connection stayed
    aiohttp's while the client kept up (in ``mixed``, 7.5 % of heartbeats)."""

    def on_server(coroutine: Coroutine[Any, Any, T]) -> Awaitable[T]:
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, uvloop_loop))

    async def start() -> tuple[SheddingRunner, int]:
        runner = SheddingRunner(create_app(settings), access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner, port

    runner, port = await on_server(start())
    try:
        server = runner.server
        assert server is not None
        rounds = 40

        async def client(n: int) -> None:
            connection = await Connection.open(port)
            try:
                for r in range(rounds):
                    await connection.send(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
                    assert status_of(await connection.answer()) == 200
                    request = post(routes[r % len(routes)], f"u-{n}", artifact=f"doc-{n}")
                    await connection.send(request)
                    assert status_of(await connection.answer()) == 200
            finally:
                connection.close()

        routes = list(ROUTES.values())
        parsed = server.requests_count
        clients = 16
        await asyncio.gather(*(client(n) for n in range(clients)))
        assert server.requests_count - parsed == clients * rounds, "only the GETs are aiohttp's"
    finally:
        await on_server(runner.cleanup())


async def test_a_request_read_before_a_popped_pipelined_one_starts_is_answered_after_it(
    serve: Serve,
) -> None:
    """Two GETs pipelined: once aiohttp answered the first and popped the second, the
    second's handler starts a turn later. A heartbeat read in that turn is not between
    requests: it is answered after the second GET, not before it."""
    served = await serve()
    server = served.runner.server
    assert server is not None
    first = await ask(served.port, post(HEARTBEAT, "bob"))  # someone on doc-1
    assert status_of(first) == 200
    connection = await Connection.open(served.port)
    auth = f"Authorization: Bearer {token('alice')}\r\n"
    pages = b"".join(
        f"GET /v1/artifacts/{doc}/presence HTTP/1.1\r\nHost: test\r\n{auth}\r\n".encode()
        for doc in ("doc-2", "doc-1")
    )
    injected: list[bool] = []
    loop = asyncio.get_running_loop()

    def between_popped_and_started() -> None:
        """Reads the heartbeat into the connection in the turn the state first holds."""
        handlers: list[Any] = list(getattr(server, "_connections", {}))
        handler = handlers[0] if handlers else None
        if (
            handler is not None
            and handler._request_count >= 2
            and handler._waiter is None
            and not handler._request_in_progress
            and not handler._messages
        ):
            handler.data_received(post(HEARTBEAT, artifact="doc-3"))
            injected.append(True)
            return
        loop.call_soon(between_popped_and_started)

    try:
        loop.call_soon(between_popped_and_started)
        await connection.send(pages)
        answers = [body_of(await connection.answer()) for _ in range(3)]
    finally:
        connection.close()
    assert injected == [True]
    assert ["users" in answer for answer in answers] == [True, True, False]
    assert [len(answer["users"]) for answer in answers[:2]] == [0, 1]
    assert answers[2]["online"] == 1


# The reads (``lean_reads.READS``): a plain GET of the online counts, the presence list or
# where-now, read by the lean and the plain server alike (reads change nothing but the
# caller's rate-limit bucket and each process's caches, so both read the same artifact).
ONLINE = "/v1/artifacts/{}/online"
LIST = "/v1/artifacts/{}/presence"
WHERE = "/v1/users/{}/presence"


def get(
    path: str,
    user: str | None = "alice",
    headers: str = "",
    *,
    scope: Scope = Scope.CLIENT,
    artifacts: list[str] | None = None,
    method: str = "GET",
    version: str = "1.1",
) -> bytes:
    auth = ""
    if user is not None:
        issued = TokenCodec(SECRET).issue(user, scope=scope, artifacts=artifacts, ttl_s=600)
        auth = f"Authorization: Bearer {issued}\r\n"
    return f"{method} {path} HTTP/{version}\r\nHost: test\r\n{auth}{headers}\r\n".encode()


def read_200(route: str, status: int = 200) -> str:
    """The metric counting a read route's answers of ``status``."""
    return f'presence_http_requests_total{{method="GET",route="{route}",status="{status}"}}'


async def seeded(serve: Serve, **changes: Any) -> Served:
    """Both servers, with alice (a state, a name) and bob online on doc-R."""
    served = await serve(**changes)
    for user, session in (("alice", "tab-0000a"), ("bob", "tab-0000b")):
        beat = post(HEARTBEAT, user, artifact="doc-R", sessionId=session, state={"x": 1})
        assert status_of(await ask(served.port, beat)) == 200
    return served


_MSGPACK = "Accept: application/msgpack\r\n"
R = "doc-R"
READ_CASES: dict[str, tuple[bytes, int, str | None]] = {
    "online 200 JSON": (get(ONLINE.format(R), "u-1"), 200, None),
    "online 200 msgpack": (get(ONLINE.format(R), "u-2", _MSGPACK), 200, None),
    "list 200 JSON": (get(LIST.format(R), "u-3"), 200, None),
    "list 200 msgpack": (get(LIST.format(R), "u-4", _MSGPACK), 200, None),
    "list 200 a query": (
        get(LIST.format(R) + "?limit=1&include=sessions,recent&recentLimit=2", "u-5"),
        200,
        None,
    ),
    "list 200 a percent-encoded query": (
        get(LIST.format(R) + "?include=sessions%2Crecent&limit=%31", "u-6", _MSGPACK),
        200,
        None,
    ),
    "list 200 plus and empty pairs": (
        get(LIST.format(R) + "?include=sessions+&&limit=2&", "u-7"),
        200,
        None,
    ),
    "list 200 If-None-Match (no ETag)": (
        get(LIST.format(R), "u-8", 'If-None-Match: "x", *\r\n'),
        200,
        None,
    ),
    "where 200 JSON": (get(WHERE.format("alice"), "alice"), 200, None),
    "where 200 msgpack": (get(WHERE.format("alice"), "alice", _MSGPACK), 200, None),
    "where 200 a dashboard": (
        get(WHERE.format("bob"), "board", scope=Scope.DASHBOARD),
        200,
        None,
    ),
    "list 400 limit 0": (get(LIST.format(R) + "?limit=0", "u-9"), 400, "limit"),
    "list 400 limit not a number": (get(LIST.format(R) + "?limit=ten", "u-9"), 400, "limit"),
    "list 400 include unknown": (get(LIST.format(R) + "?include=all", "u-9"), 400, "include"),
    "list 400 recentLimit": (
        get(LIST.format(R) + "?include=recent&recentLimit=501", "u-9"),
        400,
        "recentLimit",
    ),
    "online 400 a bad id": (get(ONLINE.format("doc~1"), "u-9"), 400, "artifactId"),
    "where 400 a long id": (get(WHERE.format("u" * 129), "u-9"), 400, "userId"),
    "online 401 no token": (get(ONLINE.format(R), None), 401, None),
    "list 401 a bad token": (
        get(LIST.format(R), None, "Authorization: Bearer nonsense\r\n"),
        401,
        None,
    ),
    "where 401 not bearer": (
        get(WHERE.format("alice"), None, "Authorization: Basic eDp5\r\n"),
        401,
        None,
    ),
    "online 403 another artifact": (
        get(ONLINE.format(R), "u-10", artifacts=["doc-2"]),
        403,
        None,
    ),
    "list 403 another artifact": (get(LIST.format(R), "u-10", artifacts=["doc-2"]), 403, None),
    "where 403 another user": (get(WHERE.format("bob"), "alice"), 403, None),
}


@pytest.mark.parametrize("case", list(READ_CASES))
async def test_a_plain_read_gets_aiohttps_bytes_without_aiohttp(serve: Serve, case: str) -> None:
    served = await seeded(serve)
    request, status, field = READ_CASES[case]
    parsed = served.parsed
    lean = await ask(served.port, request)
    assert served.parsed == parsed, "aiohttp parsed the read: the lean path did not take it"
    assert lean == await ask(served.plain_port, request)
    assert status_of(lean) == status, lean
    if status == 200:
        assert body_of(lean)["online"]  # alice and bob: counted, listed, or where alice is
    else:
        assert b"Content-Type: application/problem+json" in lean
    if field is not None:
        assert [error["field"] for error in body_of(lean)["errors"]] == [field]
    if status == 401:
        assert b'\r\nWWW-Authenticate: Bearer realm="presence-svc"\r\n' in lean


ODD_READS: dict[str, bytes] = {
    "a percent-encoded id": get(ONLINE.format("doc%2DR")),
    "an encoded slash in the id": get(ONLINE.format("doc%2FR")),
    "a dot-dot segment": get(ONLINE.format("..")),
    "a dot segment": get(WHERE.format("."), "."),
    "a fragment": get(ONLINE.format(R) + "#top"),
    "a query character left to aiohttp": get(LIST.format(R) + "?cursor=a|b"),
    "a trailing slash": get(ONLINE.format(R) + "/"),
    "HTTP/1.0": get(ONLINE.format(R), version="1.0"),
    "a Content-Length": get(ONLINE.format(R), headers="Content-Length: 0\r\n"),
    "a Connection header": get(ONLINE.format(R), headers="Connection: keep-alive\r\n"),
    "two Accept headers": get(ONLINE.format(R), headers="Accept: */*\r\n" + _MSGPACK),
    "no Host": get(ONLINE.format(R)).replace(b"Host: test\r\n", b""),
    "a folded header": get(ONLINE.format(R), headers="X-A: 1\r\n b\r\n"),
    "a non-ASCII Accept": get(ONLINE.format(R), headers="Accept: t\xe9xt/plain\r\n"),
}


@pytest.mark.parametrize("case", list(ODD_READS))
async def test_an_odd_read_is_aiohttps_and_answered_the_same(serve: Serve, case: str) -> None:
    served = await seeded(serve)
    request = ODD_READS[case]
    if case == "a non-ASCII Accept":
        request = request.decode().encode("latin-1")
    parsed = served.parsed
    lean = await ask(served.port, request)
    assert served.parsed == parsed + 1, "the lean path took it"
    assert lean == await ask(served.plain_port, request)


async def test_a_head_read_is_aiohttps(serve: Serve) -> None:
    served = await seeded(serve)
    heads = []
    for port in (served.port, served.plain_port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        parsed = served.parsed
        writer.write(get(ONLINE.format(R), method="HEAD"))
        heads.append(_DATE.sub(b"\r\nDate: -", await reader.readuntil(b"\r\n\r\n")))
        if port == served.port:
            assert served.parsed == parsed + 1
        writer.close()
    assert heads[0] == heads[1]
    assert status_of(heads[0]) == 200


@pytest.mark.parametrize("path", [ONLINE, LIST, WHERE])
async def test_past_the_read_limit_the_429_and_its_headers_are_aiohttps(
    serve: Serve, path: str
) -> None:
    served = await seeded(serve, rate_limits=parse_rate_limits("read=1/m:burst=1"))
    answers = []
    for port, user in ((served.port, "rl-1"), (served.plain_port, "rl-2")):
        request = get(path.format(user if path == WHERE else R), user)
        connection = await Connection.open(port)
        await connection.send(request)
        assert status_of(await connection.answer()) == 200
        parsed = served.parsed
        await connection.send(request)
        answers.append(await connection.answer())
        if port == served.port:
            assert served.parsed == parsed
        connection.close()
    lean, plain = answers
    assert lean == plain
    assert status_of(lean) == 429
    for header in (b"\r\nRetry-After: ", b"\r\nRateLimit: ", b"\r\nRateLimit-Policy: "):
        assert header in lean


@pytest.mark.parametrize("path", [ONLINE.format(R), LIST.format(R), WHERE.format("alice")])
async def test_a_paused_redis_is_the_same_503_for_a_read(
    serve: Serve, sync_redis: redis.Redis, path: str
) -> None:
    served = await seeded(serve, redis_timeout_s=0.2, page_cache_s=0.0)
    request = get(path)
    assert status_of(await ask(served.port, request)) == 200  # scripts loaded, connected
    sync_redis.execute_command("CLIENT", "PAUSE", 1500, "ALL")
    parsed = served.parsed
    lean, plain = await asyncio.gather(ask(served.port, request), ask(served.plain_port, request))
    assert served.parsed == parsed
    assert lean == plain
    assert status_of(lean) == 503
    assert b"\r\nRetry-After: " in lean


async def test_a_read_is_counted_under_its_route_as_aiohttp_counts_it(serve: Serve) -> None:
    served = await seeded(serve)
    route = "/v1/artifacts/{artifactId}/presence"
    before = [await metric(served.port, read_200(route, s)) for s in (200, 400)]
    parsed = served.parsed
    assert status_of(await ask(served.port, get(LIST.format(R)))) == 200
    assert status_of(await ask(served.port, get(LIST.format(R) + "?limit=0"))) == 400
    assert served.parsed == parsed
    odd = get(LIST.format(R), headers="Connection: keep-alive\r\n")
    assert status_of(await ask(served.port, odd)) == 200
    assert served.parsed == parsed + 1
    after = [await metric(served.port, read_200(route, s)) for s in (200, 400)]
    assert after == [before[0] + 2, before[1] + 1]
    assert served.app[GATE].open == 0


async def test_a_full_gate_refuses_a_read_the_lean_path_could_take(serve: Serve) -> None:
    served = await seeded(serve)
    request = get(ONLINE.format(R))
    served.app[GATE].shedding = True
    try:
        answer = await ask(served.port, request)
    finally:
        served.app[GATE].shedding = False
    assert status_of(answer) == 503
    assert b"\r\nRetry-After: " in answer
    assert status_of(await ask(served.port, request)) == 200


@pytest.mark.parametrize(
    "path",
    [ONLINE.format(f"doc{c}1") for c in "~!$&'()*+,;=:@._-"]
    + [
        LIST.format(R) + "?x=/?:@!$&'()*,;=&limit=%32&",
        LIST.format(R) + "?cursor=%FF%zz",
        LIST.format(R) + "?include=recent&include=sessions&limit=3&limit=4",
    ],
)
async def test_every_character_the_scan_takes_reads_as_aiohttp_reads_it(
    serve: Serve, path: str
) -> None:
    """Each character a path segment or a query may hold unencoded, percent-encoded query
    values (one not UTF-8, one not a percent-encoding), repeated parameters: taken by the
    lean path, answered with aiohttp's bytes (its router's and ``yarl``'s reading)."""
    served = await seeded(serve)
    request = get(path)
    parsed = served.parsed
    lean = await ask(served.port, request)
    assert served.parsed == parsed
    assert lean == await ask(served.plain_port, request)
