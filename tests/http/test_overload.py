"""Overload without collapse, over real HTTP against a real Redis: past the per-process caps
on requests in flight and on open event streams, a 503 with ``Retry-After`` at once; probes
and scrapes still answer; a client that stops reading its event stream is dropped without
holding up anyone else's events."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from presence_svc.http.admission import GATE
from presence_svc.http.resources import HUB
from presence_svc.live.events import sse
from presence_svc.ratelimits import RateLimits
from presence_svc.settings import ConfigError, Settings
from tests.conftest import AppClient, MakeClient
from tests.sse import EventStream

Auth = Callable[..., dict[str, str]]


def metric(text: str, name: str) -> float:
    """A sample's value in a Prometheus exposition (0 when absent)."""
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def scrape(client: AppClient, name: str) -> float:
    response = await client.get("/metrics")
    assert response.status == 200
    return metric(await response.text(), name)


async def wait_until(check: Callable[[], bool], within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def heartbeat_head(token_headers: dict[str, str], length: int) -> bytes:
    return (
        "POST /v1/heartbeat HTTP/1.1\r\nHost: test\r\n"
        f"Authorization: {token_headers['Authorization']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


async def test_requests_past_the_cap_get_503_at_once_while_probes_answer(
    make_client: MakeClient, auth: Auth
) -> None:
    client = await make_client(max_inflight=2)
    assert client.server.host is not None
    # Two clients send their headers and only part of the body: two handlers in flight.
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]] = []
    for n in range(2):
        body = json.dumps({"artifactId": "doc-1", "sessionId": f"tab-slow-000{n}"}).encode()
        reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
        writer.write(heartbeat_head(auth(f"slow-{n}"), len(body)) + body[:10])
        await writer.drain()
        held.append((reader, writer, body))
    metric_name = 'presence_overload_rejected_total{reason="requests"}'
    before = await scrape(client, metric_name)

    refused = 0
    carol_in = 0
    deadline = time.monotonic() + 20
    while refused == 0:  # until both held requests have reached their handlers
        assert time.monotonic() < deadline
        response = await client.post(
            "/v1/heartbeat",
            json={"artifactId": "doc-1", "sessionId": "tab-carol-0001"},
            headers=auth("carol"),
        )
        if response.status == 200:
            carol_in = 1
            continue
        assert response.status == 503, await response.text()
        assert response.headers["Retry-After"] == "1"
        assert response.content_type == "application/problem+json"
        problem = await response.json()
        assert problem["type"] == "urn:presence-svc:problem:overloaded"
        assert "limit of 2 requests in flight" in problem["detail"]
        refused += 1

    # every route but the operations ones is behind the cap, reads included
    online = await client.get("/v1/artifacts/doc-1/online", headers=auth("carol"))
    assert online.status == 503
    assert (await online.json())["type"] == "urn:presence-svc:problem:overloaded"
    for probe in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert (await client.get(probe)).status == 200, probe
    assert await scrape(client, metric_name) == before + 2

    # the held requests finish normally, and the process takes requests again
    for reader, writer, body in held:
        writer.write(body[10:])
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 20)
        assert status_line.startswith(b"HTTP/1.1 200"), status_line
        writer.close()
    response = await client.get("/v1/artifacts/doc-1/online", headers=auth("carol"))
    assert response.status == 200
    assert await response.json() == {
        "artifactId": "doc-1",
        "online": 2 + carol_in,
        "sessions": 2 + carol_in,
        "active": 2 + carol_in,
        "away": 0,
    }


async def test_streams_past_the_cap_get_503_and_a_closed_one_frees_its_place(
    make_client: MakeClient, auth: Auth
) -> None:
    client = await make_client(max_streams=1)
    board = auth("board", scope="dashboard")
    first = EventStream(await client.get("/v1/artifacts/doc-1/events", headers=board))
    assert (await first.next()).event == "sync"

    refused = await client.get("/v1/artifacts/doc-2/events", headers=board)
    assert refused.status == 503
    assert refused.headers["Retry-After"] == "1"
    problem = await refused.json()
    assert problem["type"] == "urn:presence-svc:problem:overloaded"
    assert "limit of 1 open event streams" in problem["detail"]
    # streams have a cap of their own: requests still go through
    beat = await client.post(
        "/v1/heartbeat",
        json={"artifactId": "doc-1", "sessionId": "tab-alice-0001"},
        headers=auth("alice"),
    )
    assert beat.status == 200
    assert (await first.next()).event == "join"

    await first.close()
    deadline = time.monotonic() + 20
    while True:  # the server notices the closed stream within a second or so
        response = await client.get("/v1/artifacts/doc-2/events", headers=board)
        if response.status == 200:
            second = EventStream(response)
            assert (await second.next()).event == "sync"
            await second.close()
            break
        assert response.status == 503
        response.release()
        assert time.monotonic() < deadline, "the closed stream's place was never freed"
        await asyncio.sleep(0.1)


@pytest.fixture
async def stalled_socket() -> AsyncIterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


async def test_a_client_that_stops_reading_is_dropped_and_others_keep_up(
    make_client: MakeClient,
    auth: Auth,
    stalled_socket: list[socket.socket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A small backlog keeps the test short; the socket buffers in front of it are real.
    monkeypatch.setattr(sse, "LISTENER_BACKLOG", 64)
    client = await make_client(rate_limits=RateLimits(buckets=()))  # one user, many beats
    hub = client.app[HUB]
    board = auth("board", scope="dashboard")
    assert client.server.host is not None

    # The stalled client: a tiny receive buffer, and it never reads.
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled_socket.append(slow)
    slow.connect((client.server.host, client.server.port))
    slow.sendall(
        f"GET /v1/artifacts/doc-1/events HTTP/1.1\r\nHost: test\r\n"
        f"Authorization: {board['Authorization']}\r\n\r\n".encode()
    )
    fast = EventStream(await client.get("/v1/artifacts/doc-1/events", headers=board))
    assert (await fast.next()).event == "sync"
    await wait_until(lambda: hub.listeners == 2)
    dropped_before = await scrape(client, "presence_sse_dropped_total")

    pad = "x" * 900  # near the 1 KiB state limit: the socket buffers fill sooner
    sent = 0
    deadline = time.monotonic() + 40
    while hub.listeners == 2:  # state changes until the stalled client is dropped
        assert time.monotonic() < deadline, f"the stalled client was never dropped ({sent})"
        answer = await client.post(
            "/v1/heartbeat",
            json={
                "artifactId": "doc-1",
                "sessionId": "tab-alice-0001",
                "state": {"n": sent, "pad": pad},
            },
            headers=auth("alice"),
        )
        assert answer.status == 200, await answer.text()
        sent += 1
        # The stream that reads keeps up meanwhile: it has every event so far, promptly.
        if sent % 50 == 0:
            await wait_until(lambda n=sent - 1: _last_n(fast) == n, within_s=10)

    assert await scrape(client, "presence_sse_dropped_total") == dropped_before + 1
    await wait_until(lambda: _last_n(fast) == sent - 1)
    seen = [e.data["state"]["n"] for e in fast.events if e.event == "state"]
    assert seen == list(range(1, sent)), "the reading stream missed events"  # 0 is the join
    assert not fast.ended.is_set()

    # The stalled client's connection was ended by the server: after what was buffered,
    # it reads the end (a reset) instead of waiting forever.
    slow.setblocking(False)
    loop = asyncio.get_running_loop()
    ended = False
    read_deadline = time.monotonic() + 20
    while not ended and time.monotonic() < read_deadline:
        try:
            chunk = await asyncio.wait_for(loop.sock_recv(slow, 65536), 5)
        except ConnectionResetError:
            ended = True
        else:
            ended = chunk == b""
    assert ended, "the stalled client's connection stayed open"


def _last_n(stream: EventStream) -> int:
    states = [e for e in stream.events if e.event == "state"]
    return int(states[-1].data["state"]["n"]) if states else 0


@pytest.mark.parametrize(
    "variable",
    [
        "PRESENCE_MAX_INFLIGHT",
        "PRESENCE_MAX_STREAMS",
        "PRESENCE_MAX_LOOP_LAG_MS",
        "PRESENCE_TARGET_LAG_MS",
        "PRESENCE_LISTEN_BACKLOG",
    ],
)
def test_caps_are_read_and_a_bad_one_is_named(variable: str) -> None:
    field = variable.removeprefix("PRESENCE_").lower()
    assert getattr(Settings.from_env({variable: "64"}), field) == 64
    lag = variable in ("PRESENCE_MAX_LOOP_LAG_MS", "PRESENCE_TARGET_LAG_MS")
    for bad in ("-5", "many", "70000" if lag else "0"):
        with pytest.raises(ConfigError, match=variable):
            Settings.from_env({variable: bad})


async def test_requests_are_shed_while_the_event_loop_runs_late(
    make_client: MakeClient, auth: Auth
) -> None:
    client = await make_client(max_loop_lag_ms=20)
    loop = asyncio.get_running_loop()
    blocker: asyncio.TimerHandle | None = None

    def block() -> None:  # CPU-bound work hogging the loop, as a flood of requests does
        nonlocal blocker
        time.sleep(0.05)
        blocker = loop.call_later(0.001, block)

    body = {"artifactId": "doc-1", "sessionId": "tab-alice-0001"}
    assert (await client.post("/v1/heartbeat", json=body, headers=auth("alice"))).status == 200
    before = await scrape(client, 'presence_overload_rejected_total{reason="lag"}')
    block()
    try:
        deadline = time.monotonic() + 20
        while (
            response := await client.post("/v1/heartbeat", json=body, headers=auth("alice"))
        ).status == 200:
            assert time.monotonic() < deadline, "never shed while the loop ran late"
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        problem = await response.json()
        assert problem["type"] == "urn:presence-svc:problem:overloaded"
        assert "behind on its work" in problem["detail"]
        assert (await client.get("/healthz")).status == 200
    finally:
        assert blocker is not None
        blocker.cancel()
    assert await scrape(client, 'presence_overload_rejected_total{reason="lag"}') >= before + 1
    deadline = time.monotonic() + 20
    while (await client.post("/v1/heartbeat", json=body, headers=auth("alice"))).status != 200:
        assert time.monotonic() < deadline, "still shedding after the loop caught up"
        await asyncio.sleep(0.05)


async def hold_requests(
    client: AppClient, auth: Auth, count: int, tag: str
) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]]:
    """``count`` heartbeats sent but for the end of their bodies: handlers in flight."""
    assert client.server.host is not None
    held = []
    for n in range(count):
        body = json.dumps({"artifactId": "doc-1", "sessionId": f"tab-{tag}-{n:04d}"}).encode()
        reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
        writer.write(heartbeat_head(auth(f"{tag}-{n}"), len(body)) + body[:10])
        await writer.drain()
        held.append((reader, writer, body))
    return held


async def finish(held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]]) -> None:
    for reader, writer, body in held:
        writer.write(body[10:])
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 20)
        assert status_line.startswith(b"HTTP/1.1 200"), status_line
        writer.close()


async def test_while_refusing_with_the_loop_late_fewer_are_let_in_until_it_catches_up(
    make_client: MakeClient, auth: Auth
) -> None:
    """Past the cap, with the event loop late (as refusals and reading eat it), the limit
    falls below PRESENCE_MAX_INFLIGHT: a request is refused with fewer in flight; once the
    loop is on time again, the whole cap is let in again."""
    client = await make_client(max_inflight=4, target_lag_ms=20)
    beat = {"artifactId": "doc-1", "sessionId": "tab-carol-0001"}
    loop = asyncio.get_running_loop()
    blocker: asyncio.TimerHandle | None = None

    def block() -> None:  # CPU-bound work hogging the loop, as a flood of requests does
        nonlocal blocker
        time.sleep(0.05)
        blocker = loop.call_later(0.001, block)

    held = await hold_requests(client, auth, 4, "full")
    deadline = time.monotonic() + 20
    while (await client.post("/v1/heartbeat", json=beat, headers=auth("carol"))).status != 503:
        assert time.monotonic() < deadline, "the held requests never filled the cap"
    block()
    try:
        # refused while the loop is late: the limit falls (to its floor, 1 of 4, here)
        async def refused_then_limit() -> float:
            refused = await client.post("/v1/heartbeat", json=beat, headers=auth("carol"))
            assert refused.status == 503  # (the cap is still full)
            return await scrape(client, "presence_admission_limit")

        await wait_until_async(refused_then_limit, lambda v: v == 1)
        await finish(held)  # those let in before are answered
        one = await hold_requests(client, auth, 1, "one")
        deadline = time.monotonic() + 20
        while (
            response := await client.post("/v1/heartbeat", json=beat, headers=auth("carol"))
        ).status == 200:  # until the held one reaches its handler
            assert time.monotonic() < deadline
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        problem = await response.json()
        assert problem["type"] == "urn:presence-svc:problem:overloaded"
        assert "behind on its work" in problem["detail"]  # not at the cap of 4: the loop
        await finish(one)
    finally:
        assert blocker is not None
        blocker.cancel()
    # on time again: the limit climbs back to the cap, and four at once are let in
    await wait_until_async(lambda: scrape(client, "presence_admission_limit"), lambda v: v == 4)
    again = await hold_requests(client, auth, 3, "again")
    deadline = time.monotonic() + 20
    while True:  # a fourth is let in with three in flight (once they reach their handlers)
        response = await client.post("/v1/heartbeat", json=beat, headers=auth("carol"))
        assert response.status == 200, await response.text()
        if client.app[GATE].open == 3:
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    await finish(again)


async def test_a_late_loop_alone_does_not_lower_the_limit(
    make_client: MakeClient, auth: Auth
) -> None:
    """At normal load nothing is refused: a loop slowed by something else (a busy
    neighbour) lets in the whole cap."""
    client = await make_client(max_inflight=4, target_lag_ms=20)
    loop = asyncio.get_running_loop()
    blocker: asyncio.TimerHandle | None = None

    def block() -> None:
        nonlocal blocker
        time.sleep(0.05)
        blocker = loop.call_later(0.001, block)

    block()
    try:
        await asyncio.sleep(0.5)  # several of the limit's turns, all late
        held = await hold_requests(client, auth, 3, "late")
        await wait_until(lambda: client.app[GATE].open == 3)
        response = await client.post(
            "/v1/heartbeat",
            json={"artifactId": "doc-1", "sessionId": "tab-carol-0001"},
            headers=auth("carol"),
        )
        assert response.status == 200, await response.text()
        await finish(held)
    finally:
        assert blocker is not None
        blocker.cancel()
    assert await scrape(client, "presence_admission_limit") == 4


async def wait_until_async(
    read: Callable[[], Awaitable[float]], check: Callable[[float], bool], within_s: float = 20.0
) -> None:
    deadline = time.monotonic() + within_s
    while not check(value := await read()):
        assert time.monotonic() < deadline, f"condition not met in time (last {value})"
        await asyncio.sleep(0.05)


async def test_shedding_a_stalled_loop_at_normal_load_does_not_lower_the_limit(
    make_client: MakeClient, auth: Auth
) -> None:
    """With PRESENCE_MAX_LOOP_LAG_MS set, a stall of the loop (something else than the
    requests: one at a time here) sheds them, as it should; but those refusals are not at
    the limit, so the whole cap is let in again as soon as the loop is on time (the limit
    lowered by them refused requests within the cap for seconds after the stall)."""
    client = await make_client(max_inflight=4, target_lag_ms=20, max_loop_lag_ms=20)
    beat = {"artifactId": "doc-1", "sessionId": "tab-carol-0001"}
    loop = asyncio.get_running_loop()
    blocker: asyncio.TimerHandle | None = None

    def block() -> None:  # a stall that is not the requests' doing
        nonlocal blocker
        time.sleep(0.05)
        blocker = loop.call_later(0.001, block)

    block()
    try:
        refused, started = 0, time.monotonic()
        # one request at a time, over several of the limit's turns, all late
        while refused < 6 or time.monotonic() - started < 0.6:
            response = await client.post("/v1/heartbeat", json=beat, headers=auth("carol"))
            refused += response.status == 503
            assert time.monotonic() - started < 30, "never shed while the loop ran late"
        assert client.app[GATE].limit == 4
    finally:
        assert blocker is not None
        blocker.cancel()
    deadline = time.monotonic() + 20
    while (await client.post("/v1/heartbeat", json=beat, headers=auth("carol"))).status != 200:
        assert time.monotonic() < deadline, "still shedding after the loop caught up"
        await asyncio.sleep(0.05)
    # at once, the whole cap: three in flight and a fourth let in
    held = await hold_requests(client, auth, 3, "after")
    await wait_until(lambda: client.app[GATE].open == 3)
    response = await client.post("/v1/heartbeat", json=beat, headers=auth("carol"))
    assert response.status == 200, await response.text()
    await finish(held)
    assert await scrape(client, "presence_admission_limit") == 4


async def test_a_stall_of_the_event_loop_shows_in_its_lag_histogram(
    make_client: MakeClient,
) -> None:
    """``presence_event_loop_lag_seconds``: a callback holding the loop 150 ms (a long
    garbage collection, say) is seen by the next probe as a lag past 0.1 s."""
    client = await make_client(target_lag_ms=25)

    async def late() -> float:
        text = await (await client.get("/metrics")).text()
        count = metric(text, "presence_event_loop_lag_seconds_count")
        return count - metric(text, 'presence_event_loop_lag_seconds_bucket{le="0.1"}')

    before = await late()
    await wait_until_async(  # the probe runs: some lags observed
        lambda: scrape(client, "presence_event_loop_lag_seconds_count"), lambda v: v > 0
    )
    asyncio.get_running_loop().call_soon(time.sleep, 0.15)
    await wait_until_async(late, lambda v: v >= before + 1)
