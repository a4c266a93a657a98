"""The worker's timeline chore: each hour that ended, per artifact, its peak into the
database (``timeline_hours``), so history outlives Redis's ``PRESENCE_TIMELINE_DAYS``.

The partition's index (``ps:{T}:tli``) lists only artifacts with an hour not rolled up, so
a round costs in proportion to what changed. An hour is upserted with absolute values
before the index moves past it: a worker killed in between, or two workers at once,
write the same row again, never a different one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from presence_svc.redis.connection import RedisConnection
from presence_svc.redis.keys import Keyspace
from presence_svc.settings import Settings
from presence_svc.timeline.records import TimelineRecords
from presence_svc.timeline.series import HOUR_MS, hours_from_minutes
from presence_svc.timeline.store import HourRow, TimelineStore

__all__ = ["ROLLUP_INTERVAL_S", "TimelineRollup"]

log = logging.getLogger(__name__)

ROLLUP_INTERVAL_S = 60.0
"""Between two rounds: an hour reaches the database within about a minute of its end."""
BATCH = 200
"""Artifacts per partition per step."""
HOURS_PER_STEP = 24
"""Hours of one artifact per step (a worker that was down catches up a day at a time)."""
CLOCK_MARGIN_MS = 60_000
"""An hour counts as ended a minute after it did, by this host's clock: Redis's clock
(which the writers use) may be a little behind."""


class TimelineRollup:
    def __init__(self, redis: RedisConnection, store: TimelineStore, settings: Settings) -> None:
        self.keys = Keyspace(settings.partitions)
        self.records = TimelineRecords(redis, self.keys)
        self.store = store
        self.keep_ms = settings.timeline_ms

    async def run_once(self, now_ms: int | None = None) -> int:
        """Roll up every hour that ended; returns the hours written."""
        if now_ms is None:
            now_ms = int(time.time() * 1000) - CLOCK_MARGIN_MS
        current = now_ms // HOUR_MS
        written = 0
        for tag in self.keys.tags:
            while True:
                due = await self.records.due(tag, current, BATCH)
                for artifact_id, from_hour in due:
                    written += await self._artifact(artifact_id, from_hour, current)
                if len(due) < BATCH:
                    break
        return written

    async def _artifact(self, artifact_id: str, from_hour: int, current: int) -> int:
        to_hour = min(current, from_hour + HOURS_PER_STEP)
        got = await self.records.minutes(artifact_id, from_hour * 60, to_hour * 60)
        hours = hours_from_minutes(got.records)
        rows = [HourRow(artifact_id, hour * HOUR_MS, values) for hour, values in hours.items()]
        await self.store.put_hours(rows)
        await self.records.done(artifact_id, from_hour, to_hour, self.keep_ms)
        return len(rows)

    async def run(self, stopping: asyncio.Event) -> None:
        """Rounds until ``stopping``; a failed round (Redis or the database down) is
        logged and tried again at the next."""
        if self.keep_ms <= 0:
            return
        while not stopping.is_set():
            try:
                await self.run_once()
            except Exception as exc:
                log.warning("timeline rollup failed, will retry", extra={"error": repr(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), ROLLUP_INTERVAL_S)
