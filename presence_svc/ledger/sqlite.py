"""The ledger in the SQLite file: batch inserts and keyset reads on the ``views`` table."""

from __future__ import annotations

import operator
import sqlite3
from collections.abc import AsyncIterator, Sequence

import msgspec

from presence_svc.db.sqlite import SqliteFile, transaction
from presence_svc.ledger.entry import LedgerRow
from presence_svc.ledger.store import LedgerQuery

__all__ = ["SqliteLedger"]

_VIEW_COLUMNS = "view_id, artifact_id, version_id, user_id, session_id, viewed_at"
_INSERT_VIEW = (
    f"INSERT INTO views ({_VIEW_COLUMNS}) VALUES (?, ?, ?, ?, NULLIF(?, ''), ?) "
    "ON CONFLICT (view_id) DO NOTHING"
)
_INSERT_VIEWS_JSON = (
    f"INSERT INTO views ({_VIEW_COLUMNS}) "
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

            def insert(conn: sqlite3.Connection) -> int:
                with transaction(conn):
                    before = conn.total_changes
                    conn.executemany(_INSERT_VIEW, ordered)
                    return conn.total_changes - before

            return await self._file.run(insert)
        return await self._file.run(lambda c: c.execute(_INSERT_VIEWS_JSON, (batch,)).rowcount)

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
        sql, params = _select_views(query, limit)
        rows = await self._file.run(lambda c: c.execute(sql, params).fetchall())
        return [LedgerRow(*row) for row in rows]

    async def iter_views(self, query: LedgerQuery, batch: int = 1000) -> AsyncIterator[LedgerRow]:
        while True:
            rows = await self.query_views(query, batch)
            for row in rows:
                yield row
            if len(rows) < batch:
                return
            last = rows[-1]
            query = LedgerQuery(
                artifact_id=query.artifact_id,
                user_id=query.user_id,
                since_ms=query.since_ms,
                until_ms=query.until_ms,
                after=(last.viewed_at_ms, last.view_id),
            )


def _select_views(query: LedgerQuery, limit: int) -> tuple[str, list[object]]:
    conditions = (
        ("artifact_id = ?", query.artifact_id),
        ("user_id = ?", query.user_id),
        ("viewed_at >= ?", query.since_ms),
        ("viewed_at < ?", query.until_ms),
    )
    where = [sql for sql, value in conditions if value is not None]
    params: list[object] = [value for _, value in conditions if value is not None]
    if query.after is not None:
        where.append(f"(viewed_at, view_id) {'<' if query.newest_first else '>'} (?, ?)")
        params.extend(query.after)
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    params.append(limit)
    order = "viewed_at DESC, view_id DESC" if query.newest_first else "viewed_at, view_id"
    sql = f"SELECT {_VIEW_COLUMNS} FROM views {clause}ORDER BY {order} LIMIT ?"
    return sql, params
