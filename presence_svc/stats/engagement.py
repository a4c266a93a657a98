"""Tier 2, engaged time: crediting what a session reports, within what could have happened.

A heartbeat or a page-close beacon carrying ``engagedMs`` runs ``lua/stats/engage.lua``
on the artifact's slot, in the same pipeline as the presence writer (in either order).
The script clamps the delta (see ``SLACK_MS`` and the ceiling), credits the viewer of the
version (only one with a view record of it), keeps the version's total, readers and
histogram, and marks the day's total dirty for the worker (``ledger/engagement_flush``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from presence_svc.redis.connection import RedisConnection
from presence_svc.redis.keys import Keyspace
from presence_svc.redis.scripts import ScriptCall
from presence_svc.settings import Settings

__all__ = [
    "BUCKETS_S",
    "DAY_KEEP_MS",
    "SLACK_MS",
    "Engaged",
    "EngagementStore",
    "bucket_fields",
    "utc_day",
]

SLACK_MS = 2_000
"""Credited beyond the Redis-clock time since the session's previous report: the client's
clock and the network are not Redis's."""
BUCKETS_S = (0, 10, 30, 60, 300, 900)
"""The histogram's bucket floors (seconds): a viewer with engaged time t > 0 on a version
is counted in the bucket of the largest floor <= t, field ``h:<floor>``."""
DAY_KEEP_MS = 7 * 86_400_000
"""How long a day's totals stay in Redis for the worker to write (a worker down longer
loses them)."""


def bucket_fields() -> tuple[str, ...]:
    return tuple(f"h:{floor}" for floor in BUCKETS_S)


def utc_day(at_s: float | None = None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() if at_s is None else at_s))


@dataclass(frozen=True, slots=True)
class Engaged:
    credited_ms: int
    total_ms: int | None
    """The viewer's engaged total on the version; None when the report was dropped."""


class EngagementStore:
    def __init__(self, redis: RedisConnection, settings: Settings) -> None:
        self.redis = redis
        self.keys = Keyspace(settings.partitions)
        self.ceiling_ms = settings.online_timeout_ms
        """One report credits at most the online timeout: a longer gap between two
        heartbeats would have taken the session offline."""
        self._floors = ",".join(str(f) for f in BUCKETS_S)
        self._read_after = settings.read_after_ms
        self._reports_keep = settings.away_timeout_ms + settings.online_timeout_ms
        self._day = -1
        self._rules: tuple[int, int, int, str, str, int, int] = self._rules_of(0)

    def _rules_of(self, day: int) -> tuple[int, int, int, str, str, int, int]:
        floors, read_after = self._floors, self._read_after
        today = utc_day(day * 86_400)
        return SLACK_MS, self.ceiling_ms, read_after, floors, today, self._reports_keep, DAY_KEEP_MS

    def report_call(
        self,
        artifact_id: str,
        session: bytes,
        user_id: str,
        version_id: str | None,
        engaged_ms: int,
    ) -> ScriptCall:
        """``session`` packed as the presence store packs it (``live.store.pack_session_id``)."""
        day = int(time.time() // 86_400)
        if day != self._day:  # the script's arguments but the session's, once a day
            self._day, self._rules = day, self._rules_of(day)
        return self.redis.scripts.engage.call(
            self.keys, artifact_id, self._rules, session, user_id, version_id or "", engaged_ms
        )

    async def report(
        self,
        artifact_id: str,
        session: bytes,
        user_id: str,
        version_id: str | None,
        engaged_ms: int,
    ) -> Engaged:
        call = self.report_call(artifact_id, session, user_id, version_id, engaged_ms)
        credited, total = await self.redis.run(call)
        return Engaged(int(credited), None if int(total) < 0 else int(total))
