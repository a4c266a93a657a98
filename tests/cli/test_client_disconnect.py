"""A client that hangs up in the middle of its request body is no Redis outage: checked on
a real ``serve`` (aiohttp's test server cancels the handler instead, hiding what
production meets: the body read failing with ``ConnectionResetError``)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.children import dies_with_us
from tests.cli.served import get, mint_token, stop, until_up
from tests.cli.test_cli import CLI, _env
from tests.conftest import free_port


def _sum(text: str, prefix: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


@pytest.mark.timeout(120)
def test_a_body_cut_short_by_the_client_is_not_counted_as_redis_unreachable(
    tmp_path: Path,
) -> None:
    """A phone losing its network mid-upload. Before: each was a 503 'Redis is
    unreachable', logged as such and counted in presence_refusals_total{dependency="redis"}
    (which the PresenceDependencyUnavailable alert reads) and in the 503 rate."""
    port, data = free_port(), tmp_path / "data"
    process = subprocess.Popen(
        [CLI, "serve", "--port", str(port)],
        env=_env(data),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=dies_with_us(),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        until_up(f"{base}/readyz", process)
        token = mint_token(data)
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(
                    b"POST /v1/heartbeat HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 5000\r\n"
                    + f"Authorization: Bearer {token}\r\n\r\n".encode()
                    + b'{"artifactId": "doc-1", '
                )
                time.sleep(0.1)  # the handler waits for the rest of the body
        heartbeats = 'presence_http_requests_total{method="POST",route="/v1/heartbeat"'
        deadline = time.monotonic() + 30
        while _sum(text := get(f"{base}/metrics")[1], heartbeats) < 3:  # all answered
            assert time.monotonic() < deadline, "the cut requests were never answered"
            time.sleep(0.1)
        assert _sum(text, 'presence_refusals_total{cause="unreachable",dependency="redis"}') == 0
        assert _sum(text, heartbeats + ',status="503"}') == 0
    finally:
        stop(process)


@pytest.mark.timeout(120)
def test_an_event_stream_whose_client_left_before_it_started_is_no_redis_refusal(
    tmp_path: Path, shared_redis: str
) -> None:
    """The client of an event stream hangs up while the handler still reads the first sync
    from Redis (held here by CLIENT PAUSE); the handler then starts an answer on a closed
    connection. That is no Redis outage either."""
    port, data = free_port(), tmp_path / "data"
    process = subprocess.Popen(
        [CLI, "serve", "--port", str(port)],
        env=_env(data, PRESENCE_REDIS_URL=shared_redis),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=dies_with_us(),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        until_up(f"{base}/readyz", process)
        token = mint_token(data)
        with redis.Redis.from_url(shared_redis) as admin:
            for _ in range(3):
                with socket.create_connection(("127.0.0.1", port)) as sock:
                    admin.execute_command("CLIENT", "PAUSE", 600, "ALL")
                    sock.sendall(
                        b"GET /v1/artifacts/doc-1/events HTTP/1.1\r\nHost: x\r\n"
                        + f"Authorization: Bearer {token}\r\n\r\n".encode()
                    )
                    time.sleep(0.2)  # the handler waits on the paused Redis
                time.sleep(0.8)  # the pause is over: the handler went on
        streams = (
            'presence_http_requests_total{method="GET",route="/v1/artifacts/{artifactId}/events"'
        )
        deadline = time.monotonic() + 30
        while _sum(text := get(f"{base}/metrics")[1], streams) < 3:  # all ended
            assert time.monotonic() < deadline, "the streams never ended"
            time.sleep(0.1)
        assert _sum(text, 'presence_refusals_total{cause="unreachable",dependency="redis"}') == 0
    finally:
        stop(process)
