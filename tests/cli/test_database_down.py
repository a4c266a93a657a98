"""`serve` and `worker` started while PostgreSQL is down, as processes: they start, serve
what lives in Redis, say what is down, and pick the database up when it comes back, with no
restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.cli.test_cli import Server
from tests.cli.test_multihost import ADMIN, BOARD, Hosts, _call, _headers
from tests.conftest import SECRET
from tests.postgres import PostgresServer


@pytest.fixture
def hosts(tmp_path: Path, shared_redis: str, own_postgres: PostgresServer) -> Iterator[Hosts]:
    deployment = Hosts(
        tmp_path,
        PRESENCE_REDIS_URL=shared_redis,
        PRESENCE_LEDGER_URL=own_postgres.url(),
        PRESENCE_JWT_SECRET=SECRET,
        PRESENCE_PARTITIONS="16",
        PRESENCE_LEDGER_RECLAIM_IDLE_S="1",
    )
    yield deployment
    deployment.reap()


async def _until_status(http: aiohttp.ClientSession, url: str, status: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            async with http.get(url) as response:
                if response.status == status:
                    return
        except aiohttp.ClientError:
            pass
        assert time.monotonic() < deadline, f"{url} never answered {status}"
        await asyncio.sleep(0.1)


@pytest.mark.timeout(90)
async def test_serve_and_worker_start_with_postgres_down_and_recover_without_restart(
    hosts: Hosts, own_postgres: PostgresServer
) -> None:
    own_postgres.stop("immediate")
    own_postgres.wait_gone()
    server: Server = hosts.serve("api")
    hosts.worker("worker")
    base = server.base
    async with aiohttp.ClientSession() as http:
        await _until_status(http, f"{base}/healthz", 200)
        async with http.get(f"{base}/readyz") as response:
            assert response.status == 503
            checks = (await response.json())["checks"]
        assert checks == {
            "redis": "ok",
            "scripts": "ok",
            "database": "unavailable: ConnectionRefusedError",
        }

        beat = {"artifactId": "doc-1", "sessionId": "tab-aaaa1"}
        await _call(http, "POST", f"{base}/v1/heartbeat", _headers("alice"), json=beat)
        view = {"artifactId": "doc-1", "versionId": "v1"}
        counted = await _call(http, "POST", f"{base}/v1/views", _headers("alice"), json=view)
        assert counted["counted"] is True
        page = await _call(http, "GET", f"{base}/v1/artifacts/doc-1/presence", BOARD)
        assert page["namesJoined"] is False
        assert [u["userId"] for u in page["users"]] == ["alice"]
        for method, path, headers in (
            ("GET", "/v1/ledger", BOARD),
            ("PUT", "/v1/users/alice", ADMIN),
        ):
            async with http.request(
                method, f"{base}{path}", headers=headers, json={"name": "Alice"}
            ) as response:
                assert response.status == 503
                assert response.headers["Retry-After"] == "5"
                assert response.content_type == "application/problem+json"
                assert "database" in (await response.json())["detail"]

        own_postgres.start()
        await _until_status(http, f"{base}/readyz", 200)
        await _call(http, "PUT", f"{base}/v1/users/alice", ADMIN, json={"name": "Alice"})
        page = await _call(http, "GET", f"{base}/v1/artifacts/doc-1/presence", BOARD)
        assert (page["namesJoined"], page["users"][0]["name"]) == (True, "Alice")
        deadline = time.monotonic() + 20
        while not (items := (await _call(http, "GET", f"{base}/v1/ledger", BOARD))["items"]):
            assert time.monotonic() < deadline, "the worker never drained the view"
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)
        items = (await _call(http, "GET", f"{base}/v1/ledger", BOARD))["items"]
        assert [(i["userId"], i["versionId"]) for i in items] == [("alice", "v1")]
    assert server.process.poll() is None
    assert all(worker.poll() is None for worker in hosts.workers)
