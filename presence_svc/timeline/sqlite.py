"""The hourly timeline rollup in the SQLite file."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from presence_svc.db.sqlite import SqliteFile, execute_many
from presence_svc.timeline.series import HourValues
from presence_svc.timeline.store import HourRow

__all__ = ["SqliteTimeline"]

_COLUMNS = "peak_online, peak_sessions, last_online, last_sessions"
_PUT = (
    f"INSERT INTO timeline_hours (artifact_id, hour, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (artifact_id, hour) DO UPDATE SET peak_online = excluded.peak_online, "
    "peak_sessions = excluded.peak_sessions, last_online = excluded.last_online, "
    "last_sessions = excluded.last_sessions"
)


class SqliteTimeline:
    def __init__(self, file: SqliteFile) -> None:
        self._file = file

    async def put_hours(self, rows: Sequence[HourRow]) -> None:
        params = [(r.artifact_id, r.hour_ms, *r.values) for r in rows]
        if params:
            await self._file.run(lambda c: execute_many(c, _PUT, params))

    async def hours(
        self, artifact_id: str, first_ms: int, end_ms: int
    ) -> tuple[HourValues | None, list[tuple[int, HourValues]]]:
        def read(
            conn: sqlite3.Connection,
        ) -> tuple[HourValues | None, list[tuple[int, HourValues]]]:
            before = conn.execute(
                f"SELECT {_COLUMNS} FROM timeline_hours WHERE artifact_id = ? AND hour < ? "
                "ORDER BY hour DESC LIMIT 1",
                (artifact_id, first_ms),
            ).fetchone()
            rows = conn.execute(
                f"SELECT hour, {_COLUMNS} FROM timeline_hours "
                "WHERE artifact_id = ? AND hour >= ? AND hour < ? ORDER BY hour",
                (artifact_id, first_ms, end_ms),
            ).fetchall()
            return (
                HourValues(*before) if before else None,
                [(row[0], HourValues(*row[1:])) for row in rows],
            )

        return await self._file.run(read)
