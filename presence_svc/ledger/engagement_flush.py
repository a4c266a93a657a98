"""The worker's engaged-time flush: each partition's dirty totals from Redis into the
database, at least every ``PRESENCE_ENGAGEMENT_FLUSH_S``.

``lua/stats/engage.lua`` keeps, per partition, a dirty zset: member
``<day>/<artifact>/<version>/<user>``, score that day's absolute total. A flush reads a
bounded batch, upserts the totals (the database keeps the larger of what it has and what
comes), and only then takes out the members whose score is still what was written
(``lua/stats/engage_done.lua``): a total that grew meanwhile stays for the next flush. A
worker killed between the two writes the same totals again next time, which changes
nothing; so does a second worker flushing at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from presence_svc.ledger.engagement import EngagementLedger, EngagementTotal
from presence_svc.redis.connection import RedisConnection, as_text
from presence_svc.redis.keys import Keyspace
from presence_svc.settings import Settings

__all__ = ["BATCH", "EngagementFlush"]

log = logging.getLogger(__name__)

BATCH = 1000
"""Dirty totals read per partition and step."""
_DAYS = 8
"""The days whose totals Redis may still hold: today and the 7 before
(``stats.engagement.DAY_KEEP_MS``, which the ledger may not import)."""
_STEPS = 20
"""Steps per flush at most: totals changing faster than a flush writes them wait for the
next flush instead of holding this one."""


class EngagementFlush:
    def __init__(self, redis: RedisConnection, store: EngagementLedger, settings: Settings) -> None:
        self.redis = redis
        self.store = store
        self.interval_s = settings.engagement_flush_s
        self.keys = keys = Keyspace(settings.partitions)
        self.dirty = [keys.engage_dirty(tag) for tag in keys.tags]

    async def flush_once(self) -> int:
        """Every partition's dirty totals written; returns how many were written. Each step
        reads up to ``BATCH`` per partition (one pipeline) and writes them all in one
        transaction."""
        written = 0
        dirty = self.dirty
        for _ in range(_STEPS):
            pipe = self.redis.client.pipeline(transaction=False)
            for key in dirty:
                pipe.zrange(key, 0, BATCH - 1, withscores=True)
            found = await pipe.execute()
            totals: list[EngagementTotal] = []
            done = []
            for key, members in zip(dirty, found, strict=True):
                read = []
                for member, score in members:
                    text = as_text(member)
                    parts = text.split("/")
                    if len(parts) == 4:  # a malformed member is dropped
                        day, artifact_id, version_id, user_id = parts
                        totals.append(
                            EngagementTotal(artifact_id, version_id, user_id, day, int(score))
                        )
                    read.append((text, int(score)))
                if read:
                    done.append(self.redis.scripts.engage_done.call(key, read))
            if totals:
                await self.store.upsert_totals(totals, int(time.time() * 1000))
                written += len(totals)
            for result in await self.redis.run_many(done):
                if isinstance(result, Exception):
                    raise result
            # partitions with a full batch may hold more: only those are read again
            dirty = [
                key for key, members in zip(dirty, found, strict=True) if len(members) == BATCH
            ]
            if not dirty:
                break
        return written

    async def forget_user(self, user_id: str) -> int:
        """Take ``user_id``'s totals not yet written out of Redis (the dirty marks and the
        days' totals), so a flush after the user's erasure cannot write them back under
        their id; returns how many were taken. For the erasure, before the database's
        ``erase_user``. Costs a scan of every partition's engagement keys: never hot."""
        client, removed = self.redis.client, 0
        suffix = f"*/{user_id}"  # ids hold no glob characters (schemas.ID_PATTERN)
        now = time.time()
        days = [time.strftime("%Y-%m-%d", time.gmtime(now - n * 86_400)) for n in range(_DAYS)]
        for tag in self.keys.tags:
            dirty = self.keys.engage_dirty(tag)
            members = [m async for m, _ in client.zscan_iter(dirty, match=suffix)]
            if members:
                removed += int(await client.zrem(dirty, *members))
            for day in days:
                totals = self.keys.engage_day(tag, day)
                fields = [f async for f, _ in client.hscan_iter(totals, match=suffix)]
                if fields:
                    removed += int(await client.hdel(totals, *fields))
        return removed

    async def run(self, stopping: asyncio.Event) -> None:
        """Flush every ``interval_s`` until ``stopping``, and once more then; a failed
        flush (the database or Redis down) is logged and retried at the next."""
        while True:
            try:
                await self.flush_once()
            except Exception as exc:
                log.warning("engagement flush failed, will retry", extra={"error": repr(exc)})
            if stopping.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.interval_s)
