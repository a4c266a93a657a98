"""The database interface, one contract for both backends: keyset reads of the ledger, the
users directory, the schema and its migrations, and retention; then what only PostgreSQL
has (month partitions, migrations raced by many processes)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest

from presence_svc.database import Database, open_database
from presence_svc.db.migrations import SchemaBehind, migrations
from presence_svc.db.postgres import PostgresPool
from presence_svc.ledger.entry import LedgerRow
from presence_svc.ledger.postgres import PostgresLedger
from presence_svc.ledger.store import LedgerQuery, LedgerStore
from presence_svc.timefmt import from_iso
from presence_svc.users.directory import Profile
from tests.conftest import opened_database

BASE = from_iso("2026-11-25T10:00:00Z")
DAY_MS = 86_400_000


@pytest.fixture
async def pg_database(pg_url: str) -> AsyncIterator[Database]:
    async with opened_database(pg_url) as database:
        yield database


def _rows(n: int = 40) -> list[LedgerRow]:
    """Rows over three artifacts and four users; two rows share each time, so the view id
    breaks ties."""
    return [
        LedgerRow(
            f"view-{i:03d}",
            f"doc-{i % 3}",
            f"v{i % 2}",
            f"user-{i % 4}",
            f"tab-{i:05d}" if i % 5 else None,
            BASE + (i // 2) * 1000,
        )
        for i in range(n)
    ]


def _expected(rows: list[LedgerRow], query: LedgerQuery) -> list[LedgerRow]:
    found = [
        r
        for r in rows
        if query.artifact_id in (None, r.artifact_id)
        and query.user_id in (None, r.user_id)
        and (query.since_ms is None or r.viewed_at_ms >= query.since_ms)
        and (query.until_ms is None or r.viewed_at_ms < query.until_ms)
    ]
    return sorted(found, key=lambda r: (r.viewed_at_ms, r.view_id), reverse=query.newest_first)


async def _paged(ledger: LedgerStore, query: LedgerQuery, limit: int) -> list[LedgerRow]:
    seen: list[LedgerRow] = []
    while True:
        page = await ledger.query_views(query, limit)
        seen += page
        if len(page) < limit:
            return seen
        query = dataclasses.replace(query, after=(page[-1].viewed_at_ms, page[-1].view_id))


QUERIES = [
    LedgerQuery(),
    LedgerQuery(artifact_id="doc-1"),
    LedgerQuery(user_id="user-2"),
    LedgerQuery(since_ms=BASE + 5_000, until_ms=BASE + 15_000),
    LedgerQuery(artifact_id="doc-2", since_ms=BASE + 3_000),
    LedgerQuery(user_id="user-3", until_ms=BASE + 12_000),
    LedgerQuery(artifact_id="doc-0", user_id="user-0"),
    LedgerQuery(artifact_id="doc-9"),
]


async def test_keyset_pages_by_artifact_user_and_time_in_both_orders(database: Database) -> None:
    rows = _rows()
    assert await database.ledger.insert_views(rows) == len(rows)
    for query in QUERIES:
        for newest_first in (False, True):
            ordered = dataclasses.replace(query, newest_first=newest_first)
            expected = _expected(rows, ordered)
            for limit in (1, 4, 7, 100):
                assert await _paged(database.ledger, ordered, limit) == expected, (ordered, limit)


async def test_iter_views_crosses_batch_boundaries_in_either_order(database: Database) -> None:
    rows = _rows()
    await database.ledger.insert_views(rows)
    newest = LedgerQuery(artifact_id="doc-1", newest_first=True)
    for query in (LedgerQuery(), LedgerQuery(artifact_id="doc-1"), QUERIES[3], newest):
        expected = _expected(rows, query)
        for batch in (1, 7, 8, len(expected), 1000):
            got = [row async for row in database.ledger.iter_views(query, batch)]
            assert got == expected, (query, batch)


async def test_users_get_put_delete_and_iterate(database: Database) -> None:
    users = database.users
    assert [p async for p in users.iter_profiles(3)] == []
    stored = {}
    for i in reversed(range(10)):
        avatar = f"https://x.org/{i}.png" if i % 2 else None
        stored[f"user-{i}"] = await users.put_profile(f"user-{i}", f"User {i}", avatar)
    assert await users.get_profile("user-3") == stored["user-3"]
    assert await users.get_profile("nobody") is None
    assert await users.get_profiles(["user-1", "nobody", "user-4", "user-1"]) == {
        "user-1": stored["user-1"],
        "user-4": stored["user-4"],
    }
    assert await users.get_profiles([]) == {}
    for batch in (1, 3, 5, 10, 1000):
        listed = [p async for p in users.iter_profiles(batch)]
        assert listed == [stored[k] for k in sorted(stored)], batch
    renamed = await users.put_profile("user-3", "Three", None)
    assert await users.get_profile("user-3") == renamed
    assert await users.delete_profile("user-3") is True
    assert await users.delete_profile("user-3") is False
    assert await users.get_profile("user-3") is None
    assert len([p async for p in users.iter_profiles(4)]) == 9


async def test_merging_profiles_keeps_the_newer_of_stored_and_given(database: Database) -> None:
    users = database.users
    await users.merge_profiles(
        [Profile("a", "A", None, 1000), Profile("b", "B", "https://x.org/b.png", 1000)]
    )
    written = await users.merge_profiles(
        [
            Profile("a", "A older", None, 999),
            Profile("b", "B newer", None, 1001),
            Profile("c", "C", None, 5),
        ]
    )
    assert written == 2
    assert await users.merge_profiles([Profile("a", "A same time", None, 1000)]) == 0
    assert await users.merge_profiles([]) == 0
    assert [p async for p in users.iter_profiles()] == [
        Profile("a", "A", None, 1000),
        Profile("b", "B newer", None, 1001),
        Profile("c", "C", None, 5),
    ]


def _latest(url: str) -> int:
    return len(migrations("sqlite" if url.startswith("sqlite") else "postgres"))


async def test_schema_is_current_after_open_and_migrate_is_idempotent(ledger_url: str) -> None:
    latest = _latest(ledger_url)
    for _ in range(2):
        database = open_database(ledger_url)
        await database.open()
        try:
            assert await database.schema() == (latest, latest)
            assert await database.migrate() == []
        finally:
            await database.close()
    database = open_database(ledger_url, auto_migrate=False)
    await database.open()  # current: no complaint
    await database.close()


async def test_without_auto_migrate_a_fresh_database_is_refused_until_migrated(
    ledger_url: str,
) -> None:
    fresh = open_database(ledger_url, auto_migrate=False)
    with pytest.raises(SchemaBehind) as refused:
        await fresh.open()
    latest = _latest(ledger_url)
    assert (refused.value.version, refused.value.latest) == (0, latest)
    assert "presence-svc db migrate" in str(refused.value)

    tool = open_database(ledger_url, auto_migrate=False)
    await tool.connect()
    try:
        assert await tool.schema() == (0, latest)
        applied = await tool.migrate()
        assert [m.version for m in applied] == list(range(1, latest + 1))
        assert await tool.schema() == (latest, latest)
    finally:
        await tool.close()
    database = open_database(ledger_url, auto_migrate=False)
    await database.open()
    await database.close()


def _at(when: str, i: int = 0) -> LedgerRow:
    return LedgerRow(f"{when}-{i}", "doc-1", "v1", "user-1", None, from_iso(when))


async def test_upkeep_with_a_retention_removes_old_rows_and_keeps_newer_ones(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows outside any month partition (all of them on SQLite) go by the exact cutoff, in
    bounded batches (made tiny here)."""
    monkeypatch.setattr("presence_svc.ledger.sqlite._DELETE_BATCH", 2)
    monkeypatch.setattr("presence_svc.ledger.postgres._DELETE_BATCH", 2)
    now = from_iso("2026-11-15T12:00:00Z")  # 30 days: the cutoff is 2026-10-16T12:00Z
    old = [_at("2026-08-10T00:00:00Z", i) for i in range(5)] + [_at("2026-10-16T11:59:59Z")]
    recent = [_at(t) for t in ("2026-10-16T12:00:00Z", "2026-10-20T00:00:00Z", "2026-11-14T00:00Z")]
    await database.ledger.insert_views([*old, *recent])

    await database.ledger.upkeep(now, None)  # no retention: nothing removed
    assert len(await database.ledger.query_views(LedgerQuery(), 100)) == 9
    await database.ledger.upkeep(now, 30)
    assert await database.ledger.query_views(LedgerQuery(), 100) == recent
    await database.ledger.upkeep(now, 30)  # a second round finds nothing to do
    assert await database.ledger.query_views(LedgerQuery(), 100) == recent


# --- PostgreSQL only ------------------------------------------------------------------------


async def _partitions(database: Database) -> dict[str, int]:
    """Each partition of ``views`` and how many rows it holds."""
    assert isinstance(database.connection, PostgresPool)
    pool = database.connection.pool
    names = await pool.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'views'::regclass"
    )
    return {
        r["relname"]: int(await pool.fetchval(f"SELECT count(*) FROM {r['relname']}"))
        for r in names
    }


async def test_postgres_retention_drops_whole_months_and_prepares_the_next_ones(
    pg_database: Database,
) -> None:
    """The month the cutoff falls in stays whole, rows before the cutoff too."""
    ledger = pg_database.ledger
    assert isinstance(ledger, PostgresLedger)
    await ledger.ensure_month(2026, 8)
    await ledger.ensure_month(2026, 10)
    august = [_at(f"2026-08-{day}T00:00:00Z") for day in ("01", "15", "31")]
    october = [_at("2026-10-01T00:00:00Z"), _at("2026-10-30T00:00:00Z")]
    await ledger.insert_views([*august, *october])
    partitions = await _partitions(pg_database)
    assert (partitions["views_2026_08"], partitions["views_2026_10"]) == (3, 2)

    await ledger.upkeep(from_iso("2026-11-15T12:00:00Z"), 30)
    partitions = await _partitions(pg_database)
    assert "views_2026_08" not in partitions
    assert partitions == {
        "views_default": 0,
        "views_2026_10": 2,
        "views_2026_11": 0,
        "views_2026_12": 0,
        "views_2027_01": 0,
    }
    assert await ledger.query_views(LedgerQuery(), 10) == october


async def test_postgres_rows_in_the_default_partition_move_into_their_new_month(
    pg_database: Database,
) -> None:
    ledger = pg_database.ledger
    assert isinstance(ledger, PostgresLedger)
    may = [
        LedgerRow(f"may-{i}", "doc-1", "v1", f"user-{i}", None, from_iso("2026-05-03T00:00Z") + i)
        for i in range(4)
    ]
    june = LedgerRow("june-0", "doc-1", "v1", "user-0", "tab-aaaa1", from_iso("2026-06-01T00:00Z"))
    assert await ledger.insert_views([*may, june]) == 5
    assert (await _partitions(pg_database))["views_default"] == 5

    await ledger.ensure_month(2026, 5)
    partitions = await _partitions(pg_database)
    assert (partitions["views_2026_05"], partitions["views_default"]) == (4, 1)
    assert await ledger.query_views(LedgerQuery(), 10) == [*may, june]
    # still once per view id, now that its row lives in another partition
    assert await ledger.insert_views([*may, june]) == 0
    await ledger.ensure_month(2026, 5)  # there already: nothing to do
    assert await _partitions(pg_database) == partitions


async def test_postgres_ten_openers_of_a_fresh_database_at_once_migrate_it_once(
    pg_url: str,
) -> None:
    """Ten pools, as ten API processes starting together have: the advisory lock lets one
    apply each migration; the others wait, then find nothing to do."""
    databases = [open_database(pg_url, pool_size=1) for _ in range(10)]
    try:
        await asyncio.gather(*(database.open() for database in databases))
        latest = len(migrations("postgres"))
        for database in databases:
            assert await database.schema() == (latest, latest)
        assert isinstance(databases[0].connection, PostgresPool)
        history = await databases[0].connection.pool.fetch(
            "SELECT version, count(*) AS n FROM schema_migrations GROUP BY version ORDER BY 1"
        )
        assert [(r["version"], r["n"]) for r in history] == [(v, 1) for v in range(1, latest + 1)]
    finally:
        await asyncio.gather(*(database.close() for database in databases))
