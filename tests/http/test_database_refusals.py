"""The database saying "not now" (read-only after a failover, too many connections, disk
full) is a 503 with Retry-After whose detail names the cause, counted by cause; once the
database serves again, so does the service, without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import AppClient, MakeClient
from tests.postgres import PostgresServer

Auth = Callable[..., dict[str, str]]


async def _answer(response: Any) -> tuple[int, str]:
    body = await response.json()
    assert response.status in (200, 503), body  # never a 500
    if response.status == 503:
        assert response.content_type == "application/problem+json"
        assert response.headers["Retry-After"] == "5"
        return 503, str(body["detail"])
    return 200, ""


async def _until_answer(
    request: Callable[[], Awaitable[Any]], status: int, cause: str = "", within_s: float = 20
) -> None:
    """Until ``request`` answers ``status`` (with ``cause`` in a 503's detail); every
    answer meanwhile is a 200 or a 503."""
    deadline = time.monotonic() + within_s
    seen: list[tuple[int, str]] = []
    while True:
        got = await _answer(await request())
        if got[0] == status and cause in got[1]:
            return
        seen.append(got)
        assert time.monotonic() < deadline, seen[-3:]
        await asyncio.sleep(0.05)


async def _counted(client: AppClient, cause: str) -> float:
    text = await (await client.get("/metrics")).text()
    label = f'presence_refusals_total{{cause="{cause}",dependency="database"}}'
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(label)
    )


@pytest.mark.timeout(60)
async def test_a_read_only_postgres_is_a_503_naming_it_and_the_pool_renews_its_sessions(
    make_client: MakeClient, auth: Auth, postgres_server: PostgresServer, pg_url: str
) -> None:
    client = await make_client(ledger_url=pg_url)
    admin = auth("ops", scope="admin")

    def put() -> Any:
        return client.put("/v1/users/alice", json={"name": "Alice"}, headers=admin)

    assert (await put()).status == 200
    name = pg_url.rsplit("/", 1)[1]
    # As after a failover onto a standby: sessions dropped, new ones read-only.
    postgres_server.psql(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
    postgres_server.psql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        f" WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    )
    await _until_answer(put, 503, "the database is unavailable (read-only)")
    assert await _counted(client, "read-only") >= 1
    profile = await client.get("/v1/users/alice", headers=admin)
    assert profile.status == 200  # reads go on
    ready = await client.get("/readyz")  # but an instance that cannot write is not ready
    assert ready.status == 503
    assert (await ready.json())["checks"]["database"] == "unavailable: read-only"
    # Writable again: the sessions opened read-only were renewed, nothing stays stuck.
    postgres_server.psql(f"ALTER DATABASE {name} RESET default_transaction_read_only")
    await _until_answer(put, 200)
    assert (await client.get("/readyz")).status == 200


@pytest.mark.timeout(60)
async def test_too_many_postgres_connections_is_a_503_naming_it(
    make_client: MakeClient, auth: Auth, postgres_server: PostgresServer, pg_url: str
) -> None:
    name = pg_url.rsplit("/", 1)[1]
    role = f"limited_{name}"
    postgres_server.psql(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0")
    postgres_server.psql(f"ALTER DATABASE {name} OWNER TO {role}")
    client = await make_client(ledger_url=pg_url.replace("//postgres@", f"//{role}@"))
    board = auth("board", scope="dashboard")

    def ledger() -> Any:
        return client.get("/v1/ledger?artifactId=doc-1", headers=board)

    await _until_answer(ledger, 503, "too many connections")
    ready = await (await client.get("/readyz")).json()
    assert ready["checks"]["database"] == "unavailable: too many connections"
    postgres_server.psql(f"ALTER ROLE {role} CONNECTION LIMIT -1")
    await _until_answer(ledger, 200)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB file system of the test's own (tmpfs: the suite runs as root)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.mark.timeout(60)
async def test_a_full_disk_under_sqlite_is_a_503_naming_it(
    make_client: MakeClient, auth: Auth, small_disk: Path
) -> None:
    client = await make_client(ledger_url=f"sqlite:///{small_disk / 'ledger.sqlite3'}")
    admin = auth("ops", scope="admin")
    assert (await client.put("/v1/users/u0", json={"name": "x"}, headers=admin)).status == 200
    filler = small_disk / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as out:  # ENOSPC: full
        while True:
            out.write(b"\0" * 65536)
            out.flush()
            os.fsync(out.fileno())
    users = iter(range(1, 100_000))

    def put() -> Any:
        user = f"u{next(users)}"
        return client.put(f"/v1/users/{user}", json={"name": "n" * 200}, headers=admin)

    await _until_answer(put, 503, "the database is unavailable (disk full)")
    assert await _counted(client, "disk full") >= 1
    filler.unlink()
    await _until_answer(put, 200)


@pytest.mark.timeout(60)
async def test_a_sqlite_file_locked_by_another_process_is_a_503_within_the_request_budget(
    make_client: MakeClient, auth: Auth, tmp_path: Path
) -> None:
    """Another program holding SQLite's write lock would hold a request for the 30 s busy
    timeout; it answers 503 (timeout) after PRESENCE_DB_REQUEST_TIMEOUT_S instead, and
    the write goes through once the lock is gone."""
    path = tmp_path / "ledger.sqlite3"
    client = await make_client(ledger_url=f"sqlite:///{path}", db_request_timeout_s=0.5)
    admin = auth("ops", scope="admin")
    assert (await client.put("/v1/users/u0", json={"name": "x"}, headers=admin)).status == 200
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the write lock, held
    try:
        started = time.monotonic()
        put = await client.put("/v1/users/u1", json={"name": "y"}, headers=admin)
        took = time.monotonic() - started
        assert put.status == 503, await put.text()
        assert put.content_type == "application/problem+json"
        assert "timeout" in (await put.json())["detail"]
        assert took < 10, took  # not the busy timeout's 30 s
    finally:
        other.execute("ROLLBACK")
        other.close()
    await _until_answer(
        lambda: client.put("/v1/users/u1", json={"name": "y"}, headers=admin), 200, within_s=40
    )
    got = await client.get("/v1/users/u1", headers=admin)
    assert (await got.json())["name"] == "y"
