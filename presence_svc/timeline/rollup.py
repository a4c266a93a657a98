"""The worker's timeline chore: each hour that ended, per artifact, its peak into the
database (``timeline_hours``), so history outlives Redis's ``PRESENCE_TIMELINE_DAYS``.

The partition's index (``ps:{T}:tli``) lists the artifacts whose timeline hash holds minutes
not rolled up, so a round costs in proportion to what changed. An artifact with keys keeps
its first minutes in its info hash instead (``lib/timeline.lua``, no index entry of its
own): once an hour after each hour ends, a scan of the partition's sweep index finds them
(``timeline_live.lua``). An hour is upserted with absolute values
before the index moves past it: a worker killed in between, or two workers at once,
write the same row again, never a different one. Redis then keeps the hour as one record
of its 60 minutes instead of a field per minute (``timeline_done.lua``): a 7-day read is
some 170 fields.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from presence_svc.redis.connection import RedisConnection
from presence_svc.redis.keys import Keyspace
from presence_svc.settings import Settings
from presence_svc.timeline.pieces import minute_series
from presence_svc.timeline.records import TimelineRecords, hour_record
from presence_svc.timeline.series import HOUR_MS, Counts, HourValues
from presence_svc.timeline.store import HourRow, TimelineStore

__all__ = ["ROLLUP_INTERVAL_S", "TimelineRollup"]

log = logging.getLogger(__name__)

ROLLUP_INTERVAL_S = 60.0
"""Between two rounds: an hour reaches the database within about a minute of its end."""
BATCH = 200
"""Artifacts per partition per step."""
MAX_BATCHES = 50
"""Steps per partition per round (an artifact behind by days takes one per day); what is
left waits for the next round."""
HOURS_PER_STEP = 24
"""Hours of one artifact per step (a worker that was down catches up a day at a time)."""
LIVE_SCAN = 100
"""Artifacts with keys looked at per step of the scan for minutes in their info hash."""
CLOCK_MARGIN_MS = 60_000
"""An hour counts as ended a minute after it did, by this host's clock: Redis's clock
(which the writers use) may be a little behind."""


class TimelineRollup:
    def __init__(self, redis: RedisConnection, store: TimelineStore, settings: Settings) -> None:
        self.keys = Keyspace(settings.partitions)
        self.keep_ms = settings.timeline_ms
        self.records = TimelineRecords(redis, self.keys, self.keep_ms)
        self.store = store
        self._scanned: dict[str, int] = {}
        """Partition tag -> the hour its artifacts with keys were last all rolled up to."""

    async def run_once(self, now_ms: int | None = None) -> int:
        """Roll up every hour that ended; returns the hours written."""
        if now_ms is None:
            now_ms = int(time.time() * 1000) - CLOCK_MARGIN_MS
        current = now_ms // HOUR_MS
        written = 0
        for tag in self.keys.tags:
            for _ in range(MAX_BATCHES):
                moved = False
                for artifact_id, from_hour in await self.records.due(tag, current, BATCH):
                    rows, done = await self._artifact(artifact_id, from_hour, current)
                    written += rows
                    moved = moved or done
                if not moved:  # nothing due, or Redis's clock is behind this host's
                    break
            if self._scanned.get(tag, -1) < current:
                written += await self._live(tag, current)
        return written

    async def _live(self, tag: str, current: int) -> int:
        """The artifacts of partition ``tag`` that hold minutes of an ended hour in their
        info hash: each rolled up; the partition counts as done for ``current`` only when
        every one of them was (else the next round scans again)."""
        written, complete, cursor = 0, True, "0"
        while True:
            cursor, found = await self.records.live(tag, cursor, current, LIVE_SCAN)
            for artifact_id, from_hour in found:
                rows, done = await self._artifact(artifact_id, from_hour, current)
                written += rows
                # refused (Redis's clock is behind), or more than one step behind
                complete = complete and done and from_hour + HOURS_PER_STEP >= current
            if cursor == "0":
                break
        if complete:
            self._scanned[tag] = current
        return written

    async def _artifact(self, artifact_id: str, from_hour: int, current: int) -> tuple[int, bool]:
        """Roll up one step of the artifact's hours: the rows written, and whether Redis
        moved the artifact on."""
        to_hour = min(current, from_hour + HOURS_PER_STEP)
        got = await self.records.minutes(artifact_id, from_hour * 60, to_hour * 60)
        carry = got.carry or Counts(0, 0)
        rows: list[HourRow] = []
        kept: list[tuple[int, bytes]] = []
        changed = {minute // 60 for minute in got.records}
        for hour in range(from_hour, to_hour):
            series = minute_series(hour * 60, hour * 60 + 60, carry, got.records)
            carry = series.last
            if hour in changed:
                online, sessions = series.online, series.sessions
                values = HourValues(max(online), max(sessions), carry.online, carry.sessions)
                rows.append(HourRow(artifact_id, hour * HOUR_MS, values))
                kept.append((hour, hour_record(carry, online, sessions)))
        await self.store.put_hours(rows)
        done = await self.records.done(artifact_id, from_hour, to_hour, self.keep_ms, kept)
        return len(rows), done

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
