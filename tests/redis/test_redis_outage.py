"""Redis down: a quick 503 with Retry-After, never a hang; back up: the service recovers."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import ClientResponse

from presence_svc.redis.embedded import EmbeddedRedis
from tests.conftest import MakeClient
from tests.refusals import refusals

Auth = Callable[..., dict[str, str]]
BODY = {"artifactId": "doc-1", "sessionId": "tab-aaaa1"}


async def test_redis_outage_answers_503_quickly_and_recovers(
    make_client: MakeClient, auth: Auth, tmp_path: Path
) -> None:
    server = EmbeddedRedis(tmp_path / "own-redis")
    url = server.start()
    try:
        client = await make_client(redis_url=url)
        assert (await client.post("/v1/heartbeat", json=BODY, headers=auth("a"))).status == 200

        server.stop()
        await _all_503_within(
            2.0,
            lambda: client.post("/v1/heartbeat", json=BODY, headers=auth("a")),
            lambda: client.get("/v1/artifacts/doc-1/presence", headers=auth("a")),
            lambda: client.get("/v1/online?artifactId=doc-1", headers=auth("a")),
        )
        assert (await client.get("/readyz")).status == 503
        assert (await client.get("/healthz")).status == 200

        server.start()  # same data dir: AOF brings the session back
        response = await client.post("/v1/heartbeat", json=BODY, headers=auth("a"))
        assert response.status == 200
        assert (await response.json())["sessions"] == 1
        assert (await client.get("/readyz")).status == 200
    finally:
        server.stop()


async def test_a_hung_redis_answers_503_within_two_seconds_and_recovers(
    make_client: MakeClient, auth: Auth, tmp_path: Path
) -> None:
    """A Redis that accepts nothing and answers nothing (stopped, not dead): only the
    timeouts can bound the wait."""
    server = EmbeddedRedis(tmp_path / "own-redis")
    url = server.start()
    pid = int(server.pidfile.read_text())
    try:
        client = await make_client(redis_url=url)
        assert (await client.post("/v1/heartbeat", json=BODY, headers=auth("a"))).status == 200
        os.kill(pid, signal.SIGSTOP)
        try:
            await _all_503_within(
                2.5,
                lambda: client.post("/v1/heartbeat", json=BODY, headers=auth("a")),
                lambda: client.get("/v1/online?artifactId=doc-1", headers=auth("a")),
            )
        finally:
            os.kill(pid, signal.SIGCONT)
        response = await client.post("/v1/heartbeat", json=BODY, headers=auth("a"))
        assert response.status == 200
        assert (await response.json())["sessions"] == 1
    finally:
        server.stop()


async def _all_503_within(
    seconds: float, *requests: Callable[[], Awaitable[ClientResponse]]
) -> None:
    """Each request answers 503 problem+json with a Retry-After, within ``seconds``."""
    for request in requests:
        counted = refusals("redis")
        started = time.monotonic()
        response = await request()
        assert time.monotonic() - started < seconds
        assert response.status == 503
        assert response.content_type == "application/problem+json"
        assert int(response.headers["Retry-After"]) >= 1
        assert refusals("redis") == counted + 1  # what the 503 alert's panel shows
