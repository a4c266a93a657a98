"""The ledger's batch insert: every field exactly as given, each view id once; on SQLite
and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from presence_svc.database import Database
from presence_svc.ledger.entry import LedgerRow
from presence_svc.ledger.store import LedgerQuery
from tests.conftest import opened_database

ODD = ['a"b\\c', "é😀\u2028", "123", "1e3", " ", "\\u0000", "null"]


@pytest.fixture
async def sqlite_database(tmp_path: Path) -> AsyncIterator[Database]:
    async with opened_database(f"sqlite:///{tmp_path / 'ledger.sqlite3'}") as database:
        yield database


def row(n: int, text: str = "x", session: str | None = "tab-aaaa1") -> LedgerRow:
    return LedgerRow(f"view-{n:03d}-{text}", f"doc-{text}", text, text, session, 2**53 + n)


async def stored(database: Database) -> list[LedgerRow]:
    return await database.ledger.query_views(LedgerQuery(), 1000)


async def test_rows_keep_every_field_and_an_empty_session_is_null(
    database: Database,
) -> None:
    sessions = ["", "tab-aaaa1", None]
    rows = [row(i, text, sessions[i % 3]) for i, text in enumerate(ODD)]
    assert await database.ledger.insert_views(rows) == len(rows)
    expected = [r._replace(session_id=r.session_id or None) for r in rows]
    assert sorted(await stored(database)) == sorted(expected)


async def test_a_view_id_is_written_once_within_a_batch_and_across_batches(
    database: Database,
) -> None:
    first = [row(i) for i in range(5)]
    assert await database.ledger.insert_views([*first, first[0], first[3]]) == 5
    assert await database.ledger.insert_views([*first[:2], row(5)]) == 1
    assert len(await stored(database)) == 6


async def test_a_string_holding_a_nul_is_stored_whole_in_sqlite(
    sqlite_database: Database,
) -> None:
    """SQLite's JSON strings end at a NUL; such a batch is bound row by row instead.
    (PostgreSQL text cannot hold a NUL at all; the API's id patterns never let one in.)"""
    rows = [row(1, "a\x00b"), row(2), row(2)]
    assert await sqlite_database.ledger.insert_views(rows) == 2
    assert sorted(await stored(sqlite_database)) == sorted(rows[:2])
