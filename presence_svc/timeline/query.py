"""Reading a timeline: minutes from Redis; hours and days from the database's rollup,
with Redis for the hours the worker has not rolled up yet."""

from __future__ import annotations

import time

from presence_svc.redis.connection import RedisConnection
from presence_svc.redis.keys import Keyspace
from presence_svc.settings import Settings
from presence_svc.timeline.answer import Fragments
from presence_svc.timeline.pieces import Piece, joined, minute_pieces
from presence_svc.timeline.records import TimelineRecords
from presence_svc.timeline.series import (
    HOUR_MS,
    MINUTE_MS,
    STEPS,
    Counts,
    HourValues,
    Series,
    hour_values,
    hours_from_minutes,
    step_series,
)
from presence_svc.timeline.store import TimelineStore

__all__ = ["Timeline", "points_between"]


def points_between(since_ms: int, until_ms: int, step: str) -> int:
    """How many points ``since`` .. ``until`` makes at ``step`` (the first step is the one
    ``since`` falls in; the last, the one before ``until``)."""
    size = STEPS[step]
    first = since_ms // size
    end = -(-until_ms // size)
    return max(0, end - first)


class Timeline:
    def __init__(self, redis: RedisConnection, store: TimelineStore, settings: Settings) -> None:
        self.records = TimelineRecords(redis, Keyspace(settings.partitions), settings.timeline_ms)
        self.store = store
        self.fragments = Fragments(settings.timeline_cache_mb * 1_048_576)
        """The encoded points of hours read before (``timeline.answer``), in this process."""

    @staticmethod
    def now_ms() -> int:
        return int(time.time() * 1000)

    async def read(self, artifact_id: str, since_ms: int, until_ms: int, step: str) -> Series:
        """The points of ``since`` .. ``until`` at ``step`` (``1m``, ``1h`` or ``1d``)."""
        size = STEPS[step]
        first, end = since_ms // size, -(-until_ms // size)
        if step == "1m":
            return await self._minutes(artifact_id, first, max(first, end))
        per = size // HOUR_MS
        return await self._hours(artifact_id, first * per, max(first, end) * per, per)

    async def _minutes(self, artifact_id: str, first: int, end: int) -> Series:
        pieces, last = await self.minute_pieces(artifact_id, first, end)
        return joined(first, pieces, last)

    async def minute_pieces(
        self, artifact_id: str, first: int, end: int
    ) -> tuple[list[Piece], Counts]:
        """Minutes ``first`` .. ``end - 1`` (ms / 60 000) as ``pieces.minute_pieces``."""
        got = await self.records.minutes(artifact_id, first, end)
        split = None if got.pending_hour is None else got.pending_hour * 60
        carry = got.carry
        rolled_up = split is None or first < split
        covered = first // 60 in got.hours if rolled_up else first in got.records
        if carry is None and not covered:  # Redis knows nothing before: the rollup's last hour
            before, _ = await self.store.hours(artifact_id, first * MINUTE_MS, first * MINUTE_MS)
            carry = Counts(before.last_online, before.last_sessions) if before else None
        return minute_pieces(first, end, carry or Counts(0, 0), got.records, got.hours, split)

    async def _hours(self, artifact_id: str, first: int, end: int, per: int) -> Series:
        got = await self.records.minutes(artifact_id, first * 60, end * 60, unrolled_only=True)
        # Hours before the first one not rolled up come from the database.
        split = end if got.pending_hour is None else max(first, got.pending_hour)
        before, rows = await self.store.hours(artifact_id, first * HOUR_MS, split * HOUR_MS)
        hours: dict[int, HourValues] = hour_values(rows)
        hours.update(hours_from_minutes(got.records))
        carry = Counts(before.last_online, before.last_sessions) if before else Counts(0, 0)
        if split <= first and got.carry is not None:
            carry = got.carry
        return step_series(first, end, per, hours, carry)
