"""Engaged-time totals in the SQLite file (see ``ledger/engagement.py``)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence

from presence_svc.db.sqlite import SqliteFile, execute_many, transaction
from presence_svc.ledger.engagement import (
    ENGAGEMENT_COLUMNS,
    EngagementQuery,
    EngagementRow,
    EngagementTotal,
    iter_engagement_pages,
    select_engagement,
)

__all__ = ["SqliteEngagement"]

_UPSERT = (
    f"INSERT INTO engagement ({ENGAGEMENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (day, artifact_id, version_id, user_id) DO UPDATE SET "
    "engaged_ms = excluded.engaged_ms, updated_at = excluded.updated_at "
    "WHERE excluded.engaged_ms > engagement.engaged_ms"
)


class SqliteEngagement:
    def __init__(self, file: SqliteFile) -> None:
        self._file = file

    async def upsert_totals(self, totals: Sequence[EngagementTotal], now_ms: int) -> int:
        rows = [(*t, now_ms) for t in totals]
        return await self._file.run(lambda c: execute_many(c, _UPSERT, rows))

    async def query_engagement(self, query: EngagementQuery, limit: int) -> list[EngagementRow]:
        sql, params = select_engagement(query, limit, lambda n: "?")
        rows = await self._file.run(lambda c: c.execute(sql, params).fetchall())
        return [EngagementRow(*row) for row in rows]

    def iter_engagement(
        self, query: EngagementQuery, batch: int = 1000
    ) -> AsyncIterator[EngagementRow]:
        return iter_engagement_pages(self.query_engagement, query, batch)

    async def erase_user(self, user_id: str, tombstone: str) -> int:
        def erase(conn: sqlite3.Connection) -> int:
            with transaction(conn):
                cursor = conn.execute(
                    "UPDATE engagement SET user_id = ? WHERE user_id = ?", (tombstone, user_id)
                )
                return cursor.rowcount

        return await self._file.run(erase)
