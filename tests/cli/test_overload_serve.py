"""Overload at the defaults, against the real ``presence-svc serve`` process: normal load
(every connection waiting for its answer before sending the next request) is never
refused; past the requests cap the answer is a 503 problem+json with ``Retry-After``,
written before the request is parsed, keep-alive intact, while probes and scrapes answer."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from presence_svc.auth import TokenCodec
from presence_svc.settings import Settings
from tests.cli.test_cli import Server, _wait_ready
from tests.conftest import free_port

SECRET = "overload-test-secret-0123456789abcdef0123456789"
CODEC = TokenCodec(SECRET)
# The benchmark's normal concurrency is 64 connections; more here, below the default cap.
NORMAL_CONNECTIONS = 100
REJECTED = 'presence_overload_rejected_total{reason="requests"}'
HEARTBEAT_503 = 'presence_http_requests_total{method="POST",route="/v1/heartbeat",status="503"}'


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """``serve`` at the default caps (only the secret is set, to mint tokens here)."""
    started = Server(tmp_path / "data", free_port(), PRESENCE_JWT_SECRET=SECRET)
    yield started
    started.reap()


def heartbeat(user: str, session: str, *, hold_back: int = 0) -> bytes:
    """A heartbeat request's bytes, all but the last ``hold_back`` ones."""
    body = json.dumps({"artifactId": "doc-1", "sessionId": session}).encode()
    head = (
        "POST /v1/heartbeat HTTP/1.1\r\nHost: test\r\n"
        f"Authorization: Bearer {CODEC.issue(user, ttl_s=600)}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    data = head + body
    return data[: len(data) - hold_back]


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode()


async def answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response from a keep-alive connection: status, headers (lower-case), body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    lines = head.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 30)
    return int(lines[0].split()[1]), headers, body


async def metric(port: int, name: str) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(get("/metrics"))
    status, _, body = await answer(reader)
    writer.close()
    assert status == 200
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", body.decode(), re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@pytest.mark.timeout(120)
async def test_normal_load_is_never_refused_at_the_defaults(server: Server) -> None:
    await _wait_ready(server)
    assert Settings().max_inflight > NORMAL_CONNECTIONS

    async def client(n: int) -> list[int]:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        statuses = []
        for beat in range(10):  # back to back, each once the previous one is answered
            writer.write(heartbeat(f"user-{n}", f"tab-{n:04d}-{beat % 2}"))
            statuses.append((await answer(reader))[0])
        writer.close()
        return statuses

    answers = await asyncio.gather(*(client(n) for n in range(NORMAL_CONNECTIONS)))
    assert [s for statuses in answers for s in statuses] == [200] * NORMAL_CONNECTIONS * 10
    assert await metric(server.port, REJECTED) == 0


@pytest.mark.timeout(120)
async def test_past_the_cap_a_canned_503_before_parsing_and_probes_still_answer(
    server: Server,
) -> None:
    await _wait_ready(server)
    cap = Settings().max_inflight
    # ``cap`` heartbeats sent but for their last byte: as many handlers in flight.
    held = []
    for n in range(cap):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(heartbeat(f"held-{n}", f"tab-held-{n:04d}", hold_back=1))
        held.append((reader, writer, n))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    deadline = asyncio.get_running_loop().time() + 30
    while True:  # until every held request has reached its handler
        writer.write(heartbeat("carol", "tab-carol-0001"))
        status, headers, body = await answer(reader)
        if status == 503:
            break
        assert status == 200
        assert asyncio.get_running_loop().time() < deadline, "the cap was never reached"
        await asyncio.sleep(0.05)
    refused_by_edge = await metric(server.port, HEARTBEAT_503)
    rejected = await metric(server.port, REJECTED)

    # The same connection, kept alive: refused again, one by one and pipelined.
    writer.write(heartbeat("carol", "tab-carol-0001"))
    answers = [await answer(reader)]
    writer.write(heartbeat("dave", "tab-dave-0001") + heartbeat("erin", "tab-erin-0001"))
    answers += [await answer(reader), await answer(reader)]
    for status, headers, body in answers:
        assert status == 503
        assert headers["retry-after"] == "1"
        assert headers["content-type"].startswith("application/problem+json")
        assert "date" in headers
        problem = json.loads(body)
        assert problem["type"] == "urn:presence-svc:problem:overloaded"
        assert problem["status"] == 503
        assert f"limit of {cap} requests in flight" in problem["detail"]
    # Probes and scrapes still answer, on that connection too.
    for path in ("/healthz", "/readyz", "/metrics"):
        writer.write(get(path))
        assert (await answer(reader))[0] == 200, path
    # Refused before aiohttp parsed them: counted as refusals, never reached a route.
    assert await metric(server.port, REJECTED) == rejected + 3
    assert await metric(server.port, HEARTBEAT_503) == refused_by_edge

    # The held requests finish normally; the refused connection is served again.
    for held_reader, held_writer, n in held:
        held_writer.write(b"}")
        status, _, _ = await answer(held_reader)
        assert status == 200, n
        held_writer.close()
    writer.write(heartbeat("carol", "tab-carol-0001"))
    assert (await answer(reader))[0] == 200
    writer.close()


@pytest.mark.timeout(120)
async def test_connections_holding_half_a_request_head_do_not_shut_others_out(
    server: Server,
) -> None:
    """A client that opens as many connections as the cap and sends each the start of a
    request head, never the rest (aiohttp sets no deadline on a first request's head),
    holds no handler: everyone else is served as before."""
    await _wait_ready(server)
    cap = Settings().max_inflight
    held = [(await asyncio.open_connection("127.0.0.1", server.port))[1] for _ in range(cap + 10)]
    await asyncio.sleep(0.5)  # each connection waiting for its first request
    for n, held_writer in enumerate(held):
        held_writer.write(heartbeat(f"slow-{n}", f"tab-slow-{n:04d}")[:40])  # the request line
        await held_writer.drain()
    await asyncio.sleep(0.5)  # the held bytes read by the service (not asserted on)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    for beat in range(5):
        writer.write(heartbeat("carol", "tab-carol-0001"))
        assert (await answer(reader))[0] == 200, beat
    assert await metric(server.port, REJECTED) == 0
    writer.close()
    for held_writer in held:
        held_writer.close()


def _somaxconn() -> int:
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text())
    except OSError:
        return 4096


@pytest.mark.timeout(120)
async def test_a_burst_of_new_connections_is_held_by_the_kernel_then_answered(
    server: Server,
) -> None:
    """Connections that arrive while the process is not accepting (here: stopped, as a
    process busy for a moment is) are completed and held by the kernel up to the listen
    backlog (``PRESENCE_LISTEN_BACKLOG``), not dropped: past aiohttp's 128, each dropped
    handshake left its client waiting seconds before even being connected. Once the process
    runs again, every one gets an answer: 200, or 503 with ``Retry-After``."""
    await _wait_ready(server)
    burst = min(400, _somaxconn() - 16)  # (a kernel capping backlogs lower caps the burst)
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        opened = await asyncio.wait_for(
            asyncio.gather(
                *(asyncio.open_connection("127.0.0.1", server.port) for _ in range(burst))
            ),
            30,
        )  # all connected while the process runs nothing
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    for n, (_, writer) in enumerate(opened):
        writer.write(heartbeat(f"burst-{n}", f"tab-burst-{n:04d}"))
    statuses = []
    for reader, writer in opened:
        status, headers, _ = await answer(reader)
        statuses.append(status)
        if status == 503:
            assert headers["retry-after"] == "1"
        writer.close()
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) > 0
