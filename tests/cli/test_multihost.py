"""Several hosts, for real: two `serve --no-worker` processes with data dirs of their own,
one Redis, one PostgreSQL and one `presence-svc worker`, all with one secret. What one host
writes, the other reads; a view lands in the ledger once, whichever host counted it;
erasure on one host is erasure everywhere."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from presence_svc.auth import Scope, TokenCodec
from tests.children import dies_with_us
from tests.cli.test_cli import CLI, Server, _env, _wait_ready
from tests.conftest import SECRET, free_port

LOCAL_WARNING = "the users directory and the ledger are local to this host"


def _headers(user: str, scope: Scope = Scope.CLIENT) -> dict[str, str]:
    return {"Authorization": f"Bearer {TokenCodec(SECRET).issue(user, scope=scope)}"}


ADMIN = _headers("ops", Scope.ADMIN)
BOARD = _headers("board", Scope.DASHBOARD)


class Hosts:
    """The processes of the deployment, each reaped at the end."""

    def __init__(self, tmp_path: Path, **env: str) -> None:
        self.tmp_path = tmp_path
        self.env = env
        self.servers: list[Server] = []
        self.workers: list[subprocess.Popen[bytes]] = []

    def serve(self, name: str) -> Server:
        server = Server(self.tmp_path / name, free_port(), **self.env)
        self.servers.append(server)
        return server

    def worker(self, name: str) -> None:
        process = subprocess.Popen(
            [CLI, "worker"],
            env=_env(self.tmp_path / name, **self.env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=dies_with_us(),
        )
        self.workers.append(process)

    def reap(self) -> None:
        for process in self.workers:
            process.terminate()
            process.wait(15)
        for server in self.servers:
            server.process.terminate()
            server.process.wait(15)
            server.reap()


@pytest.fixture
def hosts(tmp_path: Path, shared_redis: str, pg_url: str) -> Iterator[Hosts]:
    deployment = Hosts(
        tmp_path,
        PRESENCE_REDIS_URL=shared_redis,
        PRESENCE_LEDGER_URL=pg_url,
        PRESENCE_JWT_SECRET=SECRET,
        PRESENCE_PARTITIONS="16",
    )
    yield deployment
    deployment.reap()


async def _call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: dict[str, str],
    status: int = 200,
    **kw: Any,
) -> Any:
    async with http.request(method, url, headers=headers, **kw) as response:
        assert response.status == status, await response.text()
        return await response.json() if response.content_type.endswith("json") else None


@pytest.mark.timeout(120)
async def test_two_api_hosts_share_profiles_the_ledger_and_erasure(hosts: Hosts) -> None:
    a, b = hosts.serve("host-a"), hosts.serve("host-b")
    hosts.worker("host-w")
    await asyncio.gather(_wait_ready(a), _wait_ready(b))
    async with aiohttp.ClientSession() as http:
        profile = {"name": "Alice", "avatarUrl": "https://example.org/a.png"}
        await _call(http, "PUT", f"{a.base}/v1/users/alice", ADMIN, json=profile)
        found = await _call(http, "GET", f"{b.base}/v1/users/alice", ADMIN)
        assert (found["name"], found["avatarUrl"]) == ("Alice", "https://example.org/a.png")

        beat = {"artifactId": "doc-1", "sessionId": "tab-aaaa1"}
        await _call(http, "POST", f"{a.base}/v1/heartbeat", _headers("alice"), json=beat)
        page = await _call(http, "GET", f"{b.base}/v1/artifacts/doc-1/presence", BOARD)
        assert [(u["userId"], u["name"]) for u in page["users"]] == [("alice", "Alice")]
        assert page["namesJoined"] is True

        view = {"artifactId": "doc-1", "versionId": "v1"}
        for host, user in ((a, "alice"), (b, "bob")):
            counted = await _call(http, "POST", f"{host.base}/v1/views", _headers(user), json=view)
            assert counted["counted"] is True

        async def ledger(host: Server) -> list[tuple[str, str]]:
            body = await _call(http, "GET", f"{host.base}/v1/ledger?artifactId=doc-1", BOARD)
            return sorted((i["userId"], i["viewId"]) for i in body["items"])

        deadline = time.monotonic() + 20
        while len(await ledger(a)) < 2:
            assert time.monotonic() < deadline, "the worker did not write both views"
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # a second copy of either would show up now
        rows = await ledger(a)
        assert [user for user, _ in rows] == ["alice", "bob"]
        assert await ledger(b) == rows

        await _call(http, "DELETE", f"{b.base}/v1/users/alice", ADMIN, status=204)
        await _call(http, "GET", f"{a.base}/v1/users/alice", ADMIN, status=404)
        page = await _call(http, "GET", f"{a.base}/v1/artifacts/doc-1/presence", BOARD)
        assert page["users"] == []
        viewers_url = f"{a.base}/v1/artifacts/doc-1/versions/v1/viewers"
        viewers = await _call(http, "GET", viewers_url, BOARD)
        # erased everywhere: out of the viewers, her ledger row under a tombstone
        assert [(v["userId"], v["name"]) for v in viewers["viewers"]] == [("bob", None)]
        assert [user.partition("-")[0] for user, _ in await ledger(a)] == ["bob", "~erased"]
    for server in (a, b):
        server.process.terminate()
        assert server.process.wait(15) == 0
        stderr = server.process.stderr.read().decode()  # type: ignore[union-attr]
        assert LOCAL_WARNING not in stderr
        assert "Traceback" not in stderr


@pytest.mark.timeout(60)
async def test_serve_warns_when_redis_is_shared_but_the_database_is_sqlite(
    tmp_path: Path, shared_redis: str
) -> None:
    server = Server(tmp_path / "host", free_port(), PRESENCE_REDIS_URL=shared_redis)
    try:
        await _wait_ready(server)
        server.process.terminate()
        assert server.process.wait(15) == 0
        stderr = server.process.stderr.read().decode()  # type: ignore[union-attr]
    finally:
        server.reap()
    warning = next(line for line in stderr.splitlines() if LOCAL_WARNING in line)
    assert '"level": "warning"' in warning
    assert "PRESENCE_LEDGER_URL" in warning
