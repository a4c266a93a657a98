"""PostgreSQL down: what lives in Redis keeps answering, presence lists answer without
names (and say so), the ledger and users endpoints answer 503 with Retry-After, /readyz
names the database; back up: everything recovers without a restart."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from presence_svc.db.errors import DatabaseUnavailable, is_unavailable, unavailable_as_one
from presence_svc.db.migrations import SchemaBehind, migrations
from presence_svc.http.resources import USERS
from tests.conftest import AppClient, MakeClient
from tests.postgres import PostgresServer
from tests.refusals import refusals
from tests.sse import EventStream

Auth = Callable[..., dict[str, str]]


async def _until(check: Callable[[], Awaitable[bool]], within_s: float = 15) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.1)


async def _json(client: AppClient, path: str, headers: dict[str, str], status: int = 200) -> Any:
    response = await client.get(path, headers=headers)
    assert response.status == status, await response.text()
    return await response.json()


async def _sync_event(client: AppClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.get("/v1/artifacts/doc-1/events", headers=headers)
    assert response.status == 200, await response.text()
    stream = EventStream(response)
    try:
        event = await stream.next()
    finally:
        await stream.close()
    assert event.event == "sync"
    data: dict[str, Any] = event.data
    return data


async def _assert_database_503(client: AppClient, method: str, path: str, **kw: Any) -> None:
    counted = refusals("database")
    response = await client.request(method, path, **kw)
    assert response.status == 503, await response.text()
    assert refusals("database") == counted + 1
    assert response.content_type == "application/problem+json"
    assert response.headers["Retry-After"] == "5"
    assert "database" in (await response.json())["detail"]


@pytest.mark.timeout(60)
async def test_postgres_down_redis_tiers_keep_working_and_everything_recovers(
    make_client: MakeClient, auth: Auth, own_postgres: PostgresServer
) -> None:
    client = await make_client(
        ledger_url=own_postgres.url(),
        run_worker=True,
        ledger_reclaim_idle_s=1.0,
        # nobody times out while PostgreSQL stops and starts on a busy machine
        online_timeout_s=30.0,
        retention_s=120.0,
    )
    admin, board = auth("ops", scope="admin"), auth("board", scope="dashboard")
    response = await client.put("/v1/users/alice", json={"name": "Alice"}, headers=admin)
    assert response.status == 200
    beat = {"artifactId": "doc-1", "sessionId": "tab-aaaa1"}
    assert (await client.post("/v1/heartbeat", json=beat, headers=auth("alice"))).status == 200

    response = await client.get("/v1/artifacts/doc-1/events", headers=board)
    assert response.status == 200
    stream = EventStream(response)
    assert (await stream.next_of("sync")).data["namesJoined"] is True

    own_postgres.stop("immediate")
    own_postgres.wait_gone()
    bob = {"artifactId": "doc-1", "sessionId": "tab-bbbb1"}
    assert (await client.post("/v1/heartbeat", json=bob, headers=auth("bob"))).status == 200
    joined = (await stream.next_of("join")).data
    await stream.close()
    assert (joined["userId"], joined["name"], joined["namesJoined"]) == ("bob", None, False)
    view = {"artifactId": "doc-1", "versionId": "v1"}
    response = await client.post("/v1/views", json=view, headers=auth("alice"))
    assert response.status == 200
    assert (await response.json())["counted"] is True
    counts = await _json(client, "/v1/artifacts/doc-1/online", auth("alice"))
    assert counts == {"artifactId": "doc-1", "online": 2, "sessions": 2, "active": 2, "away": 0}

    page = await _json(client, "/v1/artifacts/doc-1/presence", auth("alice"))
    assert page["namesJoined"] is False
    assert {(u["userId"], u["name"]) for u in page["users"]} == {("alice", None), ("bob", None)}
    sync = await _sync_event(client, auth("alice"))
    assert sync["namesJoined"] is False
    assert len(sync["users"]) == 2
    viewers = await _json(client, "/v1/artifacts/doc-1/versions/v1/viewers", board)
    assert viewers["namesJoined"] is False
    assert [(v["userId"], v["name"]) for v in viewers["viewers"]] == [("alice", None)]

    await _assert_database_503(client, "GET", "/v1/ledger", headers=board)
    await _assert_database_503(client, "GET", "/v1/users/alice", headers=admin)
    await _assert_database_503(client, "PUT", "/v1/users/bob", json={"name": "Bob"}, headers=admin)
    ready = await _json(client, "/readyz", {}, status=503)
    assert ready["checks"]["redis"] == "ok"
    assert ready["checks"]["database"].startswith("unavailable: ")

    own_postgres.start()

    async def ready_again() -> bool:
        return (await client.get("/readyz")).status == 200

    await _until(ready_again)
    page = await _json(client, "/v1/artifacts/doc-1/presence", auth("alice"))
    assert page["namesJoined"] is True
    assert {(u["userId"], u["name"]) for u in page["users"]} == {("alice", "Alice"), ("bob", None)}
    assert (await _sync_event(client, auth("alice")))["namesJoined"] is True

    async def view_in_ledger() -> bool:
        body = await _json(client, "/v1/ledger?artifactId=doc-1", board)
        return len(body["items"]) > 0

    await _until(view_in_ledger)  # the drain resumed by itself
    await asyncio.sleep(0.3)
    items = (await _json(client, "/v1/ledger?artifactId=doc-1", board))["items"]
    assert [(i["userId"], i["versionId"]) for i in items] == [("alice", "v1")]


@pytest.mark.timeout(60)
async def test_starts_with_postgres_down_and_connects_and_migrates_when_it_is_back(
    make_client: MakeClient, auth: Auth, own_postgres: PostgresServer
) -> None:
    own_postgres.stop("fast")
    client = await make_client(ledger_url=own_postgres.url())
    admin = auth("ops", scope="admin")
    beat = {"artifactId": "doc-1", "sessionId": "tab-aaaa1"}
    assert (await client.post("/v1/heartbeat", json=beat, headers=auth("alice"))).status == 200
    ready = await _json(client, "/readyz", {}, status=503)
    assert ready["checks"]["database"] == "unavailable: ConnectionRefusedError"
    await _assert_database_503(client, "GET", "/v1/users/alice", headers=admin)

    own_postgres.start()
    # Concurrent first uses: one pool made, the schema migrated once.
    answers = await asyncio.gather(
        *(client.put(f"/v1/users/u{i}", json={"name": f"U{i}"}, headers=admin) for i in range(8))
    )
    assert [a.status for a in answers] == [200] * 8
    migrated = own_postgres.psql("SELECT count(*) FROM schema_migrations")
    assert migrated == str(len(migrations("postgres")))  # each migration once
    assert (await client.get("/readyz")).status == 200


async def test_a_sqlite_file_that_cannot_be_opened_is_a_503_until_it_can(
    make_client: MakeClient, auth: Auth, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    client = await make_client(ledger_url=f"sqlite:///{blocker / 'ledger.sqlite3'}")
    admin = auth("ops", scope="admin")
    await _assert_database_503(client, "GET", "/v1/users/alice", headers=admin)
    ready = await _json(client, "/readyz", {}, status=503)
    assert ready["checks"]["database"] == "unavailable: FileExistsError"
    blocker.unlink()
    response = await client.put("/v1/users/alice", json={"name": "Alice"}, headers=admin)
    assert response.status == 200
    assert (await client.get("/readyz")).status == 200


async def test_a_real_bug_in_the_users_directory_stays_a_500(
    client: AppClient, auth: Auth, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: object) -> None:
        raise RuntimeError("a bug")

    users = client.app[USERS]
    monkeypatch.setattr(users, "get_profile", broken)
    monkeypatch.setattr(users, "get_profiles", broken)
    response = await client.get("/v1/users/alice", headers=auth("ops", scope="admin"))
    assert response.status == 500
    beat = {"artifactId": "doc-1", "sessionId": "tab-aaaa1"}
    await client.post("/v1/heartbeat", json=beat, headers=auth("alice"))
    response = await client.get("/v1/artifacts/doc-1/presence", headers=auth("alice"))
    assert response.status == 500  # not a list without names: that is for outages only


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (ConnectionRefusedError(111, "refused"), True),
        (TimeoutError(), True),
        (asyncpg.CannotConnectNowError("the database system is starting up"), True),
        (asyncpg.TooManyConnectionsError("too many clients"), True),
        (asyncpg.ConnectionDoesNotExistError("closed in the middle"), True),
        (asyncpg.InterfaceError("pool is closing"), True),
        (SchemaBehind(0, 1), True),
        (sqlite3.OperationalError("database is locked"), True),
        (sqlite3.OperationalError("unable to open database file"), True),
        (sqlite3.OperationalError("no such table: views"), False),
        (asyncpg.UndefinedTableError("relation does not exist"), False),
        (asyncpg.InterfaceError("cannot call Connection.fetch(): released"), False),
        (ValueError("a bug"), False),
    ],
)
async def test_only_outages_count_as_the_database_unavailable(
    error: Exception, unavailable: bool
) -> None:
    assert is_unavailable(error) is unavailable
    with pytest.raises(DatabaseUnavailable if unavailable else type(error)):
        async with unavailable_as_one():
            raise error
