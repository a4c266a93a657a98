"""The worker's fold of engaged time: the accumulators nobody credited in time.

A reporting session's accumulated engaged time is credited by its own next report once
its fold is due (``lua/lib/engage.lua``). A session that stopped reporting (it left
without a beacon, timed out, or went quiet) has nobody to do it: every ``CHECK_S`` the
worker runs ``lua/stats/engage_fold.lua`` on each partition, which credits the
accumulators whose fold is due, in bounded steps. Both are atomic in Redis, so whichever
comes first credits the time once; a worker killed midway leaves the rest for the next
pass, and two workers never credit one accumulator twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from presence_svc.redis.connection import RedisConnection
from presence_svc.redis.keys import Keyspace
from presence_svc.settings import Settings
from presence_svc.stats.engagement import EngagementRules

__all__ = ["BATCH", "CHECK_S", "EngagementFold"]

log = logging.getLogger(__name__)

BATCH = 100
"""Accumulators folded per partition and step (one script call each: ~50 µs each in Redis,
so a step holds Redis a few ms at most)."""
CHECK_S = 5.0
"""How often the worker looks for due accumulators: engaged time of a session that went
shows in the totals at most the fold interval plus this after its last report."""
_STEPS = 20
"""Steps per pass at most: a larger backlog waits for the next pass."""


class EngagementFold:
    def __init__(self, redis: RedisConnection, settings: Settings) -> None:
        self.redis = redis
        self.rules = EngagementRules(settings)
        self.tags = Keyspace(settings.partitions).tags
        self.interval_s = min(CHECK_S, settings.engagement_fold_s or CHECK_S)

    async def fold_once(self) -> int:
        """Every partition's due accumulators folded; returns how many were credited."""
        credited = 0
        tags = self.tags
        script = self.redis.scripts.engage_fold
        for _ in range(_STEPS):
            rules = self.rules.rules()
            results = await self.redis.run_many([script.call(t, rules, BATCH) for t in tags])
            full = []
            for tag, result in zip(tags, results, strict=True):
                if isinstance(result, Exception):
                    raise result
                credited += int(result[1])
                if int(result[0]) >= BATCH:
                    full.append(tag)
            if not full:
                break
            tags = tuple(full)
        return credited

    async def run(self, stopping: asyncio.Event) -> None:
        """Fold every ``interval_s`` until ``stopping``, and once more then; a failed pass
        (Redis down) is logged and retried at the next."""
        while True:
            try:
                await self.fold_once()
            except Exception as exc:
                log.warning("engagement fold failed, will retry", extra={"error": repr(exc)})
            if stopping.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.interval_s)
