"""The worker's ledger upkeep: a round at start and then every hour (retention, PostgreSQL's
month partitions), and a database that is down only postpones it."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time

import pytest

import presence_svc.worker
from presence_svc.database import Database, open_database
from presence_svc.db.postgres import PostgresPool
from presence_svc.ledger.entry import LedgerRow
from presence_svc.ledger.store import LedgerQuery
from presence_svc.redis.connection import RedisConnection
from presence_svc.settings import Settings
from presence_svc.worker import LedgerUpkeep, Worker
from tests.postgres import PostgresServer

DAY_MS = 86_400_000


def _coming_months() -> set[str]:
    """This month's partition and the next two."""
    today = dt.datetime.now(dt.UTC)
    names = set()
    for ahead in range(3):
        month0 = today.month - 1 + ahead
        names.add(f"views_{today.year + month0 // 12:04d}_{month0 % 12 + 1:02d}")
    return names


async def _partitions(database: Database) -> set[str]:
    assert isinstance(database.connection, PostgresPool)
    records = await database.connection.pool.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'views'::regclass"
    )
    return {r["relname"] for r in records}


async def test_a_round_applies_the_retention_and_prepares_the_coming_months(
    database: Database,
) -> None:
    now = int(time.time() * 1000)
    old = LedgerRow("old", "doc-1", "v1", "user-1", None, now - 400 * DAY_MS)
    new = LedgerRow("new", "doc-1", "v1", "user-1", None, now - DAY_MS)
    await database.ledger.insert_views([old, new])

    assert await LedgerUpkeep(database.ledger, None).run_once() is True
    assert len(await database.ledger.query_views(LedgerQuery(), 10)) == 2
    assert await LedgerUpkeep(database.ledger, 365).run_once() is True
    assert await database.ledger.query_views(LedgerQuery(), 10) == [new]
    if database.kind == "postgres":
        assert _coming_months() <= await _partitions(database)


async def test_the_worker_runs_a_round_at_start(
    pg_url: str, redis_conn: RedisConnection, settings: Settings
) -> None:
    database = open_database(pg_url)
    await database.open()
    worker = Worker(redis_conn, database, settings.replace(ledger_retention_days=30))
    task = asyncio.create_task(worker.run())
    try:
        deadline = time.monotonic() + 10
        while not _coming_months() <= await _partitions(database):
            assert time.monotonic() < deadline, "no upkeep round at start"
            assert not task.done()
            await asyncio.sleep(0.05)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
        await database.close()


async def test_a_database_that_is_down_is_logged_and_retried_never_fatal(
    pg_url: str,
    postgres_server: PostgresServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    database = open_database(pg_url)
    await database.open()
    # Gone under the open pool: every statement now fails, as with a server that is down.
    postgres_server.psql(f"DROP DATABASE {pg_url.rsplit('/', 1)[1]} WITH (FORCE)")
    upkeep = LedgerUpkeep(database.ledger, 30)
    caplog.set_level(logging.WARNING, logger="presence_svc.worker")
    try:
        assert await upkeep.run_once() is False
        failed = [r for r in caplog.records if r.getMessage() == "ledger upkeep failed, will retry"]
        assert len(failed) == 1
        assert "error" in failed[0].__dict__

        monkeypatch.setattr(presence_svc.worker, "UPKEEP_RETRY_S", 0.05)
        stopping = asyncio.Event()
        task = asyncio.create_task(upkeep.run(stopping))
        deadline = time.monotonic() + 10
        while len([r for r in caplog.records if "upkeep failed" in r.getMessage()]) < 4:
            assert time.monotonic() < deadline, "failed rounds were not retried"
            assert not task.done()
            await asyncio.sleep(0.05)
        stopping.set()
        await asyncio.wait_for(task, 10)
    finally:
        await database.close()
