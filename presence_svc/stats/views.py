"""Tier 2, view statistics: recording a view and reading the aggregates.

Recording is one atomic script on the artifact's slot (debounce, stats, stream append) and
one on the user's slot (the views index erasure walks, the "recently viewed" list), sent
together to both nodes at once on a Cluster. A single server, where slots do not matter,
runs both in one script call (``lua/stats/view.lua``): one call for Redis to run and one
answer for this process to wait for and parse, instead of two.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import msgspec

from presence_svc import metrics
from presence_svc.cursors import decode_cursor, encode_cursor
from presence_svc.redis.connection import RedisConnection, as_text
from presence_svc.redis.keys import Keyspace
from presence_svc.redis.scripts import ScriptCall
from presence_svc.settings import Settings
from presence_svc.stats.engagement import bucket_fields

__all__ = [
    "RECENT_KEEP",
    "RecentItem",
    "RecordedView",
    "Stats",
    "VersionStats",
    "ViewStore",
    "Viewer",
    "ViewerPage",
    "new_view_id",
]


RECENT_KEEP = 200
RECENT_TTL_MS = 90 * 24 * 3600 * 1000


def new_view_id() -> str:
    """Unique and roughly time-ordered (ms then 64 random bits): ledger inserts stay local.
    The bits come from ``random`` (seeded from the OS, and again in a forked child), not
    ``secrets``: an id is no secret, and ``os.urandom`` was a system call per view."""
    return f"{time.time_ns() // 1_000_000:012x}{random.getrandbits(64):016x}"


@dataclass(frozen=True, slots=True)
class RecordedView:
    counted: bool
    views: int
    unique_viewers: int
    viewed_at_ms: int


@dataclass(frozen=True, slots=True)
class VersionStats:
    version_id: str
    views: int
    unique_viewers: int
    last_viewed_at_ms: int
    engaged_ms: int = 0
    readers: int = 0
    histogram: tuple[int, ...] = ()
    """Viewers per engaged-time bucket, in ``stats.engagement.BUCKETS_S`` order."""


@dataclass(frozen=True, slots=True)
class Stats:
    views: int
    unique_viewers: int
    last_viewed_at_ms: int | None
    versions: list[VersionStats]


@dataclass(frozen=True, slots=True)
class Viewer:
    user_id: str
    views: int
    first_viewed_at_ms: int
    last_viewed_at_ms: int
    engaged_ms: int = 0


@dataclass(frozen=True, slots=True)
class ViewerPage:
    viewers: list[Viewer]
    next_cursor: str | None
    hidden: int = 0
    """Viewers left out because their view history is hidden (the caller's own excepted)."""


@dataclass(frozen=True, slots=True)
class RecentItem:
    artifact_id: str
    version_id: str | None
    last_viewed_at_ms: int


class ViewStore:
    def __init__(self, redis: RedisConnection, settings: Settings) -> None:
        self.redis = redis
        self.keys = Keyspace(settings.partitions)
        self._debounce = settings.view_debounce_ms
        self._one_server = not settings.redis_cluster
        """One call per view (``view_call``): the keys of the user and of the artifact may
        sit on different nodes of a Cluster, never on a single server."""

    def record_call(
        self,
        artifact_id: str,
        version_id: str,
        user_id: str,
        session_id: str | None,
        hidden: bool = False,
    ) -> ScriptCall:
        """The record_view.lua call for one view (a fresh view id each time); ``hidden``:
        the user's view history is hidden (counted, not listed to others)."""
        return self.redis.scripts.record_view.call(
            self.keys,
            artifact_id,
            version_id,
            user_id,
            session_id,
            new_view_id(),
            self._debounce,
            hidden,
        )

    def note_call(self, user_id: str, artifact_id: str, version_id: str) -> ScriptCall:
        """The note_view.lua call of a view: the user's views index and recent list."""
        return self.redis.scripts.note_view.call(
            self.keys, user_id, artifact_id, version_id, RECENT_KEEP, RECENT_TTL_MS
        )

    def view_call(
        self,
        artifact_id: str,
        version_id: str,
        user_id: str,
        session_id: str | None,
        hidden: bool = False,
    ) -> ScriptCall:
        """``note_call`` and ``record_call`` as one call (view.lua), on a single server
        only: its keys span the user's slot and the artifact's."""
        return self.redis.scripts.view.call(
            self.keys,
            artifact_id,
            version_id,
            user_id,
            session_id,
            new_view_id(),
            self._debounce,
            hidden,
            RECENT_KEEP,
            RECENT_TTL_MS,
        )

    async def record(
        self,
        artifact_id: str,
        version_id: str,
        user_id: str,
        session_id: str | None,
        hidden: bool = False,
    ) -> RecordedView:
        # The notes on the user's slot (the views index, which erasure walks, and the
        # recent list) first, then the view on the artifact's slot: one call on a single
        # server, one round trip to both nodes on a Cluster. A failure answers 503; a
        # retry notes again (idempotent) and the debounce keeps the view counted once.
        if self._one_server:
            call = self.view_call(artifact_id, version_id, user_id, session_id, hidden)
            recorded = await self.redis.run(call)
        else:
            _, recorded = await self.redis.run_all(
                [
                    self.note_call(user_id, artifact_id, version_id),
                    self.record_call(artifact_id, version_id, user_id, session_id, hidden),
                ]
            )
        counted, views, unique, now = recorded
        view = RecordedView(bool(counted), int(views), int(unique), int(now))
        metrics.count_view(view.counted)
        return view

    async def recent(self, user_id: str, limit: int) -> list[RecentItem]:
        pipe = self.redis.client.pipeline(transaction=False)
        pipe.zrevrange(self.keys.user_recent(user_id), 0, limit - 1, withscores=True)
        pipe.hgetall(self.keys.user_recent_versions(user_id))
        entries, versions = await pipe.execute()
        return [
            RecentItem(
                artifact_id=as_text(member),
                version_id=as_text(versions[member]) if member in versions else None,
                last_viewed_at_ms=int(score),
            )
            for member, score in entries
        ]

    async def stats(self, artifact_id: str, most_versions: int = 1000) -> Stats:
        k = self.keys
        pipe = self.redis.client.pipeline(transaction=False)
        pipe.hmget(k.artifact_stats(artifact_id), "views", "last")
        pipe.scard(k.artifact_viewers(artifact_id))
        pipe.zrevrange(k.artifact_versions(artifact_id), 0, most_versions - 1, withscores=True)
        (views, last), unique, versions = await pipe.execute()
        pipe = self.redis.client.pipeline(transaction=False)
        ids = [as_text(member) for member, _ in versions]
        fields = ("views", "engagedMs", "readers", *bucket_fields())
        for version_id in ids:
            pipe.hmget(k.version_stats(artifact_id, version_id), *fields)
            pipe.hlen(k.version_viewers(artifact_id, version_id))
        counts = await pipe.execute() if ids else []
        return Stats(
            views=int(views or 0),
            unique_viewers=int(unique),
            last_viewed_at_ms=int(last) if last else None,
            versions=[
                _version_stats(version_id, counts[2 * i], counts[2 * i + 1], score)
                for i, (version_id, (_, score)) in enumerate(zip(ids, versions, strict=True))
            ],
        )

    async def viewers(
        self,
        artifact_id: str,
        version_id: str,
        limit: int,
        cursor: str | None,
        own_user_id: str = "",
    ) -> ViewerPage:
        """A page of viewers; ``own_user_id`` (the caller) sees their own row even when
        their view history is hidden."""
        after = decode_cursor(cursor) if cursor else None
        call = self.redis.scripts.viewers.call(
            self.keys, artifact_id, version_id, limit, after, own_user_id
        )
        raw = await self.redis.run(call)
        page, has_more, *rest = msgspec.msgpack.decode(raw)
        # an entry is [views, first, last, engagedMs?, hidden?]: engagedMs absent is 0
        viewers = [
            Viewer(
                as_text(user),
                int(entry[0]),
                int(entry[1]),
                int(entry[2]),
                int(entry[3] or 0) if len(entry) > 3 else 0,
            )
            for user, entry in (page or [])
        ]
        next_cursor = None
        if has_more and viewers:
            # the caller's own row may sit last on a page: the cursor is the last row's
            last = viewers[-1]
            next_cursor = encode_cursor(last.last_viewed_at_ms, last.user_id)
        return ViewerPage(viewers, next_cursor, int(rest[0]) if rest else 0)


def _version_stats(
    version_id: str, values: list[bytes | None], unique: int, last: float
) -> VersionStats:
    """A version's stats from its hash's ``views``, ``engagedMs``, ``readers`` and
    histogram fields (in that order)."""
    views, engaged, readers, *buckets = (int(v or 0) for v in values)
    return VersionStats(
        version_id=version_id,
        views=views,
        unique_viewers=int(unique),
        last_viewed_at_ms=int(last),
        engaged_ms=engaged,
        readers=readers,
        histogram=tuple(buckets),
    )
