"""The ledger in the SQLite file: batch inserts and keyset reads on the ``views`` table."""

from __future__ import annotations

import operator
import sqlite3
from collections.abc import AsyncIterator, Sequence

import msgspec

from presence_svc.db.sqlite import SqliteFile, execute_many
from presence_svc.ledger.entry import LedgerRow
from presence_svc.ledger.store import VIEW_COLUMNS, LedgerQuery, iter_pages, select_views

__all__ = ["SqliteLedger"]

_INSERT_VIEW = (
    f"INSERT INTO views ({VIEW_COLUMNS}) VALUES (?, ?, ?, ?, NULLIF(?, ''), ?) "
    "ON CONFLICT (view_id) DO NOTHING"
)
_INSERT_VIEWS_JSON = (
    f"INSERT INTO views ({VIEW_COLUMNS}) "
    "SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, NULLIF(value ->> 4, ''), "
    "value ->> 5 FROM json_each(?) WHERE true ON CONFLICT (view_id) DO NOTHING"
)
"""Rows given as one JSON array of ``LedgerRow`` arrays (``WHERE true`` tells SQLite's
parser that ``ON CONFLICT`` is the upsert clause, not a join constraint)."""
_ROWS_JSON = msgspec.json.Encoder()
_DELETE_BATCH = 10_000
_VIEW_ID = operator.itemgetter(0)


class SqliteLedger:
    def __init__(self, file: SqliteFile) -> None:
        self._file = file

    async def ping(self) -> None:
        await self._file.ping()

    async def insert_views(self, rows: Sequence[LedgerRow]) -> int:
        # In view id order (ids start with their time): the primary key grows in place.
        # Keyed on the id: comparing str keys is several times cheaper than comparing rows.
        ordered = sorted(rows, key=_VIEW_ID)
        # The batch as one JSON text in one statement (atomic by itself): sqlite3 lets go of
        # the GIL for all of it, where executemany takes the GIL back for every row and
        # waits for it whenever the event loop is busy (reading the next batch). SQLite's
        # JSON strings end at a NUL, so rows holding one are bound one by one instead.
        batch = _ROWS_JSON.encode(ordered).decode()
        if "\\u0000" in batch:
            return await self._file.run(lambda c: execute_many(c, _INSERT_VIEW, ordered))
        return await self._file.run(lambda c: c.execute(_INSERT_VIEWS_JSON, (batch,)).rowcount)

    async def erase_user(self, user_id: str, tombstone: str, limit: int) -> int:
        def erase(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "UPDATE views SET user_id = ?, session_id = NULL WHERE view_id IN "
                "(SELECT view_id FROM views WHERE user_id = ? LIMIT ?)",
                (tombstone, user_id, limit),
            ).rowcount

        return await self._file.run(erase)

    async def upkeep(self, now_ms: int, keep_days: int | None) -> None:
        if keep_days is not None:
            await self.delete_before(now_ms - keep_days * 86_400_000)

    async def delete_before(self, cutoff_ms: int) -> int:
        """Delete rows viewed before ``cutoff_ms``, ``_DELETE_BATCH`` per transaction, so
        the API's reads never wait long on the writer lock; returns how many."""

        def delete(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM views WHERE view_id IN (SELECT view_id FROM views "
                "WHERE viewed_at < ? LIMIT ?)",
                (cutoff_ms, _DELETE_BATCH),
            ).rowcount

        deleted = 0
        while (count := await self._file.run(delete)) > 0:
            deleted += count
            if count < _DELETE_BATCH:
                break
        return deleted

    async def query_views(self, query: LedgerQuery, limit: int) -> list[LedgerRow]:
        sql, params = select_views(query, limit, lambda n: "?")
        rows = await self._file.run(lambda c: c.execute(sql, params).fetchall())
        return [LedgerRow(*row) for row in rows]

    def iter_views(self, query: LedgerQuery, batch: int = 1000) -> AsyncIterator[LedgerRow]:
        return iter_pages(self.query_views, query, batch)
