"""The timeline's hourly rollup in the database (table ``timeline_hours``): what the
worker writes and the 1h/1d reads join with Redis's current hours."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from presence_svc.db.postgres import PostgresPool
from presence_svc.db.sqlite import SqliteFile
from presence_svc.timeline.series import HourValues

__all__ = ["HourRow", "TimelineStore", "timeline_store"]


@dataclass(frozen=True, slots=True)
class HourRow:
    artifact_id: str
    hour_ms: int
    """The hour's start, ms since the epoch."""
    values: HourValues


class TimelineStore(Protocol):
    async def put_hours(self, rows: Sequence[HourRow]) -> None:
        """Upsert ``rows`` (absolute values: writing the same rows again changes nothing)."""

    async def hours(
        self, artifact_id: str, first_ms: int, end_ms: int
    ) -> tuple[HourValues | None, list[tuple[int, HourValues]]]:
        """The last row before ``first_ms``, and the rows of hours starting in
        ``first_ms`` .. ``end_ms - 1``, in order."""


def timeline_store(connection: SqliteFile | PostgresPool) -> TimelineStore:
    """The rollup table on the configured database's connection."""
    from presence_svc.timeline.postgres import PostgresTimeline
    from presence_svc.timeline.sqlite import SqliteTimeline

    if isinstance(connection, PostgresPool):
        return PostgresTimeline(connection)
    return SqliteTimeline(connection)
