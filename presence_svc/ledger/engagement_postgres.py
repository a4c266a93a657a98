"""Engaged-time totals in PostgreSQL (see ``ledger/engagement.py``): a batch is one
``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO UPDATE`` statement."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from presence_svc.db.postgres import PostgresPool, rows_affected
from presence_svc.ledger.engagement import (
    ENGAGEMENT_COLUMNS,
    EngagementQuery,
    EngagementRow,
    EngagementTotal,
    iter_engagement_pages,
    select_engagement,
)

__all__ = ["PostgresEngagement"]

_UPSERT = (
    f"INSERT INTO engagement AS e ({ENGAGEMENT_COLUMNS}) "
    "SELECT a, v, u, d, ms, $6::bigint FROM unnest("
    "$1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[]) AS batch(a, v, u, d, ms) "
    "ON CONFLICT (day, artifact_id, version_id, user_id) DO UPDATE SET "
    "engaged_ms = excluded.engaged_ms, updated_at = excluded.updated_at "
    "WHERE excluded.engaged_ms > e.engaged_ms"
)


class PostgresEngagement:
    def __init__(self, db: PostgresPool) -> None:
        self._db = db

    async def upsert_totals(self, totals: Sequence[EngagementTotal], now_ms: int) -> int:
        if not totals:
            return 0
        a, v, u, d, ms = (list(column) for column in zip(*totals, strict=True))
        return rows_affected(await self._db.execute(_UPSERT, a, v, u, d, ms, now_ms))

    async def query_engagement(self, query: EngagementQuery, limit: int) -> list[EngagementRow]:
        sql, params = select_engagement(query, limit, lambda n: f"${n}")
        return [EngagementRow(*record) for record in await self._db.fetch(sql, *params)]

    def iter_engagement(
        self, query: EngagementQuery, batch: int = 1000
    ) -> AsyncIterator[EngagementRow]:
        return iter_engagement_pages(self.query_engagement, query, batch)

    async def erase_user(self, user_id: str, tombstone: str) -> int:
        status = await self._db.execute(
            "UPDATE engagement SET user_id = $1 WHERE user_id = $2", tombstone, user_id
        )
        return rows_affected(status)
