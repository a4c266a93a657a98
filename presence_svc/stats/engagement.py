"""Tier 2, engaged time: the rules a session's report is credited by.

A heartbeat carrying ``engagedMs`` runs the presence writer with ``lua/lib/engage.lua``
in front of it (``stats/heartbeat_engaged.lua``): one atomic call on the artifact's slot
that clamps the delta (``SLACK_MS``, the ceiling) and adds it to the session's
accumulator. At most every ``PRESENCE_ENGAGEMENT_FOLD_S`` per session, at its leave (every
leave runs ``stats/leave_engaged.lua``), at a version change, or by the worker once due
(``stats/engagement_fold``), the accumulated time is credited to the viewer of the version
(only one with a view record of it): the version's total, readers and histogram, and the
day's total marked dirty for the worker (``ledger/engagement_flush``). A heartbeat without
it runs the writer alone.
"""

from __future__ import annotations

import time
from functools import partial

from presence_svc.redis.scripts import Engagement, EngageRules
from presence_svc.settings import Settings

__all__ = [
    "BUCKETS_S",
    "DAY_KEEP_MS",
    "SLACK_MS",
    "EngagementRules",
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


_engagement = partial(tuple.__new__, Engagement)


def bucket_fields() -> tuple[str, ...]:
    return tuple(f"h:{floor}" for floor in BUCKETS_S)


def utc_day(at_s: float | None = None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() if at_s is None else at_s))


class EngagementRules:
    """The rules of this process (settings), and today's day."""

    def __init__(self, settings: Settings) -> None:
        self.ceiling_ms = settings.online_timeout_ms
        """One report credits at most the online timeout: a longer gap between two
        heartbeats would have taken the session offline."""
        self.fold_ms = settings.engagement_fold_ms
        self._fixed = (
            SLACK_MS,
            self.ceiling_ms,
            settings.read_after_ms,
            ",".join(str(f) for f in BUCKETS_S),
            # an accumulator outlives its fold interval (the worker folds it when due)
            settings.away_timeout_ms + settings.online_timeout_ms + self.fold_ms,
            DAY_KEEP_MS,
        )
        self._day = -1
        self._rules = EngageRules(*self._fixed, utc_day(0), self.fold_ms)

    def rules(self) -> EngageRules:
        """The rules as of now (today's day)."""
        day = int(time.time() // 86_400)
        if day != self._day:
            self._day = day
            self._rules = EngageRules(*self._fixed, utc_day(day * 86_400), self.fold_ms)
        return self._rules

    def engagement(self, engaged_ms: int) -> Engagement | None:
        """What a heartbeat passes to the presence store: None for 0 (a plain heartbeat,
        which costs nothing more). Made as a bare tuple is (``Engagement(...)`` runs a
        Python ``__new__``: it was most of this call's cost)."""
        if not engaged_ms:
            return None
        return _engagement((self.rules(), engaged_ms))

    def leaving(self, engaged_ms: int) -> Engagement:
        """What a leave passes: always one, so the session's accumulated time is credited
        (``engaged_ms`` 0: only that)."""
        return Engagement(self.rules(), engaged_ms)
