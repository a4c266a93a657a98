"""The ledger in PostgreSQL: ``views`` partitioned by month, batch inserts by COPY.

A batch goes in by one COPY (binary, its own transaction), the fastest way in. COPY cannot
skip a row that is already there, so a batch holding a view id already stored (a
redelivered entry) or twice fails whole on the primary key and goes in again as six arrays
unnested by one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` statement, which skips
them. benchmarks/README.md ("PostgreSQL (issue 12)") has the figures of both, and of COPY
into a temporary table. Reads are keyset pages on the indexes (artifact, time, id) and
(user, time, id). Upkeep creates the coming months' partitions, and, with a retention,
drops whole months past it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Sequence

import asyncpg

from presence_svc.db.postgres import PostgresPool, rows_affected
from presence_svc.ledger.entry import LedgerRow
from presence_svc.ledger.store import VIEW_COLUMNS, LedgerQuery, iter_pages, select_views

__all__ = ["PostgresLedger", "month_bounds"]

log = logging.getLogger(__name__)

MONTHS_AHEAD = 2
"""Partitions kept ready beyond the current month."""
_COPY_COLUMNS = VIEW_COLUMNS.split(", ")
_INSERT = (
    f"INSERT INTO views ({VIEW_COLUMNS}) "
    "SELECT v, a, r, u, NULLIF(s, ''), t FROM unnest("
    "$1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[]"
    ") AS batch(v, a, r, u, s, t) ON CONFLICT DO NOTHING"
)
_DELETE_BATCH = 10_000


def month_bounds(year: int, month: int) -> tuple[int, int]:
    """The month's first and next month's first millisecond (UTC)."""
    start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
    end = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=dt.UTC)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def _partition_name(year: int, month: int) -> str:
    return f"views_{year:04d}_{month:02d}"


class PostgresLedger:
    def __init__(self, db: PostgresPool) -> None:
        self._db = db

    async def ping(self) -> None:
        await self._db.ping()

    async def insert_views(self, rows: Sequence[LedgerRow]) -> int:
        if not rows:
            return 0
        # An empty session id is stored as NULL (as the unnest statement does it).
        records = [row if row.session_id else row._replace(session_id=None) for row in rows]
        try:
            async with self._db.acquire() as conn:
                status = await conn.copy_records_to_table(
                    "views", records=records, columns=_COPY_COLUMNS
                )
        except asyncpg.UniqueViolationError:
            return await self._insert_skipping(rows)
        return rows_affected(status)

    async def _insert_skipping(self, rows: Sequence[LedgerRow]) -> int:
        """The batch in one statement that skips the view ids already stored."""
        columns = list(zip(*rows, strict=True))
        sessions = [s or "" for s in columns[4]]
        status = await self._db.execute(
            _INSERT, columns[0], columns[1], columns[2], columns[3], sessions, columns[5]
        )
        return rows_affected(status)

    async def query_views(self, query: LedgerQuery, limit: int) -> list[LedgerRow]:
        sql, params = _select_views(query, limit)
        records = await self._db.fetch(sql, *params)
        return [LedgerRow(*record) for record in records]

    def iter_views(self, query: LedgerQuery, batch: int = 1000) -> AsyncIterator[LedgerRow]:
        return iter_pages(self.query_views, query, batch)

    async def erase_user(self, user_id: str, tombstone: str, limit: int) -> int:
        status = await self._db.execute(
            "UPDATE views SET user_id = $1, session_id = NULL WHERE (view_id, viewed_at) IN "
            "(SELECT view_id, viewed_at FROM views WHERE user_id = $2 LIMIT $3)",
            tombstone,
            user_id,
            limit,
        )
        return rows_affected(status)

    async def upkeep(self, now_ms: int, keep_days: int | None) -> None:
        """The partitions of this month and the next ones ready; with ``keep_days``, the
        months wholly before the cutoff dropped and older rows of the default deleted."""
        today = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
        for ahead in range(MONTHS_AHEAD + 1):
            month0 = today.month - 1 + ahead
            await self.ensure_month(today.year + month0 // 12, month0 % 12 + 1)
        if keep_days is not None:
            await self.drop_before(now_ms - keep_days * 86_400_000)

    async def ensure_month(self, year: int, month: int) -> None:
        """Create the month's partition if missing, moving in any of its rows that the
        default partition caught meanwhile (one transaction)."""
        name = _partition_name(year, month)
        start, end = month_bounds(year, month)
        async with self._db.acquire() as conn:
            if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
                return
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", name)
                if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
                    return  # another worker made it while we waited
                stray = await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM views_default "
                    "WHERE viewed_at >= $1 AND viewed_at < $2)",
                    start,
                    end,
                )
                if stray:
                    await conn.execute("ALTER TABLE views DETACH PARTITION views_default")
                await conn.execute(
                    f"CREATE TABLE {name} PARTITION OF views FOR VALUES FROM ({start}) TO ({end})"
                )
                if stray:
                    moved = await conn.execute(
                        f"WITH moved AS (DELETE FROM views_default WHERE viewed_at >= {start} "
                        f"AND viewed_at < {end} RETURNING *) "
                        f"INSERT INTO views ({VIEW_COLUMNS}) SELECT {VIEW_COLUMNS} FROM moved"
                    )
                    await conn.execute("ALTER TABLE views ATTACH PARTITION views_default DEFAULT")
                    log.info(
                        "ledger rows moved into their month", extra={"rows": rows_affected(moved)}
                    )
            log.info("ledger partition created", extra={"partition": name})

    async def drop_before(self, cutoff_ms: int) -> int:
        """Drop every month that ends at or before ``cutoff_ms`` and delete the default
        partition's older rows in bounded batches; returns the rows deleted that way."""
        async with self._db.acquire() as conn:
            months = await conn.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'views'::regclass AND c.relname ~ '^views_[0-9]{4}_[0-9]{2}$'"
            )
            for record in months:
                name = record["relname"]
                year, month = int(name[6:10]), int(name[11:13])
                if month_bounds(year, month)[1] <= cutoff_ms:
                    await conn.execute(f"DROP TABLE IF EXISTS {name}")
                    log.info("ledger partition dropped", extra={"partition": name})
            deleted = 0
            while True:
                status = await conn.execute(
                    "DELETE FROM views_default WHERE ctid IN (SELECT ctid FROM views_default "
                    "WHERE viewed_at < $1 LIMIT $2)",
                    cutoff_ms,
                    _DELETE_BATCH,
                )
                count = rows_affected(status)
                deleted += count
                if count < _DELETE_BATCH:
                    return deleted


def _select_views(query: LedgerQuery, limit: int) -> tuple[str, list[object]]:
    """The page's SELECT with PostgreSQL's ``$n`` placeholders (benchmarks/ledger_keyset.py
    explains it)."""
    return select_views(query, limit, lambda n: f"${n}")
