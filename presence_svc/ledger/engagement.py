"""Engaged time in the database: absolute daily totals per (artifact, version, user, day).

The worker upserts what Redis holds for the day (``ledger/engagement_flush.py``); a row
only ever grows to a larger absolute value, so writing the same total twice (a replay, a
second worker, a flush cut short by a crash) changes nothing. Reads are keyset pages in
(day, artifact, version, user) order, as the views ledger's are in time order.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

__all__ = [
    "ENGAGEMENT_COLUMNS",
    "EngagementLedger",
    "EngagementQuery",
    "EngagementRow",
    "EngagementTotal",
    "day_range",
    "iter_engagement_pages",
    "select_engagement",
]

ENGAGEMENT_COLUMNS = "artifact_id, version_id, user_id, day, engaged_ms, updated_at"


class EngagementTotal(NamedTuple):
    """One (artifact, version, user, day) total as Redis holds it."""

    artifact_id: str
    version_id: str
    user_id: str
    day: str
    """UTC, ``YYYY-MM-DD``."""
    engaged_ms: int


class EngagementRow(NamedTuple):
    artifact_id: str
    version_id: str
    user_id: str
    day: str
    engaged_ms: int
    updated_at_ms: int


@dataclass(frozen=True, slots=True)
class EngagementQuery:
    artifact_id: str | None = None
    version_id: str | None = None
    user_id: str | None = None
    since_day: str | None = None
    """First day included (``YYYY-MM-DD``)."""
    until_day: str | None = None
    """Last day included."""
    after: tuple[str, str, str, str] | None = None
    """Keyset cursor: (day, artifact, version, user) of the last row already read."""
    shown_to: str | None = None
    """Leave out users who hid their view history, except this one (None: every row, for
    admins and exports)."""


class EngagementLedger(Protocol):
    async def upsert_totals(self, totals: Sequence[EngagementTotal], now_ms: int) -> int:
        """Write each total, keeping a larger one already stored; returns rows changed."""

    async def query_engagement(self, query: EngagementQuery, limit: int) -> list[EngagementRow]:
        """Rows matching ``query`` in (day, artifact, version, user) order."""

    def iter_engagement(
        self, query: EngagementQuery, batch: int = 1000
    ) -> AsyncIterator[EngagementRow]:
        """Every row matching ``query``, fetched in batches."""

    async def erase_user(self, user_id: str, tombstone: str) -> int:
        """Replace ``user_id`` by ``tombstone`` in every row; returns how many."""


def day_range(since_ms: int | None, until_ms: int | None) -> tuple[str | None, str | None]:
    """The UTC days of a time range [since, until): the day holding ``since`` and the one
    holding the instant before ``until``."""

    def day(ms: int | None) -> str | None:
        return None if ms is None else time.strftime("%Y-%m-%d", time.gmtime(ms / 1000))

    return day(since_ms), day(None if until_ms is None else until_ms - 1)


def select_engagement(
    query: EngagementQuery, limit: int, mark: Callable[[int], str]
) -> tuple[str, list[object]]:
    """The SELECT of one keyset page and its parameters (``mark(n)``: the backend's
    placeholder for the n-th parameter)."""
    params: list[object] = []

    def bind(value: object) -> str:
        params.append(value)
        return mark(len(params))

    conditions = (
        ("artifact_id = ", query.artifact_id),
        ("version_id = ", query.version_id),
        ("user_id = ", query.user_id),
        ("day >= ", query.since_day),
        ("day <= ", query.until_day),
    )
    where = [sql + bind(value) for sql, value in conditions if value is not None]
    if query.shown_to is not None:
        where.append(
            "user_id NOT IN (SELECT user_id FROM privacy WHERE view_history = 'hidden' "
            f"AND user_id <> {bind(query.shown_to)})"
        )
    if query.after is not None:
        marks = ", ".join(bind(v) for v in query.after)
        where.append(f"(day, artifact_id, version_id, user_id) > ({marks})")
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    return (
        f"SELECT {ENGAGEMENT_COLUMNS} FROM engagement {clause}"
        f"ORDER BY day, artifact_id, version_id, user_id LIMIT {bind(limit)}",
        params,
    )


async def iter_engagement_pages(
    query_engagement: Callable[[EngagementQuery, int], Awaitable[list[EngagementRow]]],
    query: EngagementQuery,
    batch: int,
) -> AsyncIterator[EngagementRow]:
    while True:
        rows = await query_engagement(query, batch)
        for row in rows:
            yield row
        if len(rows) < batch:
            return
        last = rows[-1]
        after = (last.day, last.artifact_id, last.version_id, last.user_id)
        query = dataclasses.replace(query, after=after)
