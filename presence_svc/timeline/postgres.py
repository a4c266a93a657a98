"""The hourly timeline rollup in PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence

from presence_svc.db.postgres import PostgresPool
from presence_svc.timeline.series import HourValues
from presence_svc.timeline.store import HourRow

__all__ = ["PostgresTimeline"]

_COLUMNS = "peak_online, peak_sessions, last_online, last_sessions"
_PUT = (
    f"INSERT INTO timeline_hours (artifact_id, hour, {_COLUMNS}) "
    "SELECT * FROM unnest($1::text[], $2::bigint[], $3::int[], $4::int[], $5::int[], $6::int[]) "
    "ON CONFLICT (artifact_id, hour) DO UPDATE SET peak_online = excluded.peak_online, "
    "peak_sessions = excluded.peak_sessions, last_online = excluded.last_online, "
    "last_sessions = excluded.last_sessions"
)


class PostgresTimeline:
    def __init__(self, db: PostgresPool) -> None:
        self._db = db

    async def put_hours(self, rows: Sequence[HourRow]) -> None:
        if rows:
            await self._db.execute(
                _PUT,
                [r.artifact_id for r in rows],
                [r.hour_ms for r in rows],
                *([r.values[i] for r in rows] for i in range(4)),
            )

    async def hours(
        self, artifact_id: str, first_ms: int, end_ms: int
    ) -> tuple[HourValues | None, list[tuple[int, HourValues]]]:
        before = await self._db.fetch(
            f"SELECT {_COLUMNS} FROM timeline_hours WHERE artifact_id = $1 AND hour < $2 "
            "ORDER BY hour DESC LIMIT 1",
            artifact_id,
            first_ms,
        )
        rows = await self._db.fetch(
            f"SELECT hour, {_COLUMNS} FROM timeline_hours "
            "WHERE artifact_id = $1 AND hour >= $2 AND hour < $3 ORDER BY hour",
            artifact_id,
            first_ms,
            end_ms,
        )
        return (
            HourValues(*before[0]) if before else None,
            [(row[0], HourValues(*row[1:])) for row in rows],
        )
