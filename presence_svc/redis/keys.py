"""Every Redis key name and the partition hash tags, in one place.

Each artifact belongs to one partition; every key of that artifact (and the partition's
own keys: sweep index, views stream) carries the partition's hash tag, so each Lua
script touches a single Redis Cluster slot. Ids may contain ``:``, so keys that join
several ids separate them with ``/``, which ids cannot contain.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

__all__ = ["ArtifactKeys", "Keyspace", "partition_tags"]

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(n: int) -> str:
    digits = ""
    while True:
        n, rem = divmod(n, 36)
        digits = _ALPHABET[rem] + digits
        if n == 0:
            return digits


@lru_cache(maxsize=8)
def partition_tags(count: int) -> tuple[str, ...]:
    """Short hash tags, one per partition, whose slots spread evenly over the cluster.

    Partition ``i`` gets a tag whose slot lies in the i-th of ``count`` equal slot ranges,
    so any cluster that splits slots into contiguous ranges receives an even share
    (naive tags such as ``{0}..{63}`` land on a handful of slots).
    """
    if not 1 <= count <= REDIS_CLUSTER_HASH_SLOTS:
        raise ValueError(f"partition count must be within 1..{REDIS_CLUSTER_HASH_SLOTS}")
    tags: list[str | None] = [None] * count
    missing = count
    candidate = 0
    while missing:
        tag = _base36(candidate)
        candidate += 1
        bucket = key_slot(tag.encode()) * count // REDIS_CLUSTER_HASH_SLOTS
        if tags[bucket] is None:
            tags[bucket] = tag
            missing -= 1
    return tuple(t for t in tags if t is not None)


@dataclass(frozen=True, slots=True)
class ArtifactKeys:
    """The keys of one artifact's live presence."""

    artifact_id: str
    tag: str
    sessions: str
    """zset: session id -> deadline (ms): when it goes offline unless it beats again."""
    info: str
    """hash: packed session id -> msgpack [userId, versionId, state(, flags)]; user id
    -> msgpack [active sessions, packed ids of the counted sessions]; ``~n``: users
    counted, ``~a``: of them active, ``~j``: last join number, ``~w``: the watermark,
    ``~t``: the timeline's minutes not rolled up yet, packed (lua/lib/timeline.lua)."""
    users: str
    """zset: user id -> join number; the counted users in the order they came (pages)."""
    channel: str
    """pub/sub channel of the artifact's presence events."""
    due: str
    """zset (per partition): artifact id -> when the sweeper should next look at it (ms)."""
    recent: str
    """zset: user id -> lastSeen (ms) * 4 + reason code, the users recently here and
    offline now (``?include=recent``); see lua/lib/recent.lua."""
    recent_due: str
    """zset (per partition): artifact id -> when its ``recent`` zset expires (ms)."""
    outbox: str
    """stream (per partition): the presence changes for webhooks; the writers append to it
    only while it exists (the dispatcher creates it when a webhook endpoint exists)."""
    timeline: str
    """hash: the artifact's online users and sessions per minute (peak timeline): its hour
    records, and its minutes not rolled up once they do not fit in ``info``'s ``~t``."""
    timeline_index: str
    """zset (per partition): artifact id -> its oldest hour whose minutes in ``timeline``
    are not rolled up into the database yet (see lua/lib/timeline.lua)."""
    counts: str
    """hash (per partition): artifact id -> its online counts as the writers left them,
    and until when they hold (see lua/lib/counts.lua)."""


class Keyspace:
    """Maps artifacts and users to partitions and builds their key names."""

    __slots__ = ("_artifacts", "_tags", "count")

    CACHED_ARTIFACTS = 65_536
    """Artifacts whose key names are kept built: an online batch of 1 000 ids spent more
    time building key names (crc32, f-strings) than Redis spent answering."""

    def __init__(self, partitions: int) -> None:
        self._tags = partition_tags(partitions)
        self.count = partitions
        self._artifacts: dict[str, ArtifactKeys] = {}

    @property
    def tags(self) -> tuple[str, ...]:
        return self._tags

    def partition_of(self, ident: str) -> int:
        return zlib.crc32(ident.encode()) % self.count

    def tag_of(self, ident: str) -> str:
        return self._tags[zlib.crc32(ident.encode()) % self.count]

    def artifact(self, artifact_id: str) -> ArtifactKeys:
        keys = self._artifacts.get(artifact_id)
        if keys is None:
            if len(self._artifacts) >= self.CACHED_ARTIFACTS:
                self._artifacts.clear()
            tag = self.tag_of(artifact_id)
            base = f"ps:{{{tag}}}:{artifact_id}"
            keys = self._artifacts[artifact_id] = ArtifactKeys(
                artifact_id=artifact_id,
                tag=tag,
                sessions=f"{base}:s",
                info=f"{base}:h",
                users=f"{base}:u",
                channel=f"{base}:ev",
                due=self.due(tag),
                recent=f"{base}:r",
                recent_due=self.recent_due(tag),
                outbox=self.outbox(tag),
                timeline=f"{base}:tl",
                timeline_index=self.timeline_index(tag),
                counts=self.counts(tag),
            )
        return keys

    @staticmethod
    def due(tag: str) -> str:
        return f"ps:{{{tag}}}:due"

    @staticmethod
    def ready_probe() -> str:
        """string, short-lived: what ``/readyz`` writes to learn whether Redis takes writes."""
        return "ps:ready"

    @staticmethod
    def recent_due(tag: str) -> str:
        """zset (per partition): artifact id -> when its recently-here zset expires (ms)."""
        return f"ps:{{{tag}}}:rdue"

    @staticmethod
    def outbox(tag: str) -> str:
        """stream (per partition): presence changes appended by the writers for webhooks."""
        return f"ps:{{{tag}}}:ob"

    @staticmethod
    def timeline_index(tag: str) -> str:
        """zset (per partition): artifact id -> its oldest hour (ms / 3 600 000) whose
        minutes in its timeline hash the worker has not rolled up into the database yet."""
        return f"ps:{{{tag}}}:tli"

    @staticmethod
    def counts(tag: str) -> str:
        """hash (per partition): artifact id -> ``users:sessions:active:until``, the online
        counts the writers keep for batch reads (lua/lib/counts.lua)."""
        return f"ps:{{{tag}}}:cnt"

    @staticmethod
    def presence_prefix(tag: str) -> str:
        """What every presence key of partition ``tag`` starts with (``ps:{T}:``): a script
        that reads many artifacts builds their key names from it."""
        return f"ps:{{{tag}}}:"

    def where_now(self, user_id: str) -> str:
        """zset on the USER's slot: ``<artifact>/<session digest hex>`` -> when written (ms);
        a superset of where the user's sessions are, checked against each artifact on read."""
        return f"wn:{{{self.tag_of(user_id)}}}:{user_id}:z"

    def where_now_generation(self, user_id: str) -> str:
        """string beside ``where_now``: a number that changes whenever the index gains or
        loses a member (never back to an earlier value, after a failover too: each change
        moves it to at least Redis's clock in µs), so a read that knows it is told
        the members are the ones it read before, without them."""
        return f"wn:{{{self.tag_of(user_id)}}}:{user_id}:g"

    @staticmethod
    def workers() -> str:
        """zset: worker id -> alive until (ms); the live workers share the partitions."""
        return "ps:workers"

    # Views (tier 2) and the stream feeding the ledger (tier 3).

    def view_debounce(self, artifact_id: str, version_id: str, user_id: str) -> str:
        return self.view_debounce_prefix(artifact_id, version_id) + user_id

    def view_debounce_prefix(self, artifact_id: str, version_id: str) -> str:
        """``view_debounce`` but the user id: the same for every view of one version."""
        tag = self.tag_of(artifact_id)
        return f"vw:{{{tag}}}:d:{artifact_id}/{version_id}/"

    def artifact_stats(self, artifact_id: str) -> str:
        """hash: views, lastViewedAt; the artifact's own totals."""
        return f"vw:{{{self.tag_of(artifact_id)}}}:a:{artifact_id}"

    def artifact_viewers(self, artifact_id: str) -> str:
        """set: user ids that ever viewed any version of the artifact (exact)."""
        return f"vw:{{{self.tag_of(artifact_id)}}}:au:{artifact_id}"

    def artifact_versions(self, artifact_id: str) -> str:
        """zset: version id -> last view (ms)."""
        return f"vw:{{{self.tag_of(artifact_id)}}}:av:{artifact_id}"

    def version_stats(self, artifact_id: str, version_id: str) -> str:
        """hash: views of one version (its last view is its score in ``artifact_versions``)."""
        return f"vw:{{{self.tag_of(artifact_id)}}}:v:{artifact_id}/{version_id}"

    def version_viewers(self, artifact_id: str, version_id: str) -> str:
        """hash: user id -> msgpack [views, firstViewedAt, lastViewedAt, engagedMs?, hidden?]
        on the version (engaged ms absent: 0; hidden truthy: the viewer hid their history);
        every script rewriting an entry keeps the elements it does not own."""
        return f"vw:{{{self.tag_of(artifact_id)}}}:vu:{artifact_id}/{version_id}"

    def version_viewers_by_time(self, artifact_id: str, version_id: str) -> str:
        """zset: user id -> last view (ms), for paging viewers most recent first."""
        return f"vw:{{{self.tag_of(artifact_id)}}}:vz:{artifact_id}/{version_id}"

    def artifact_latest(self, artifact_id: str) -> str:
        """hash: ``v`` the version people are expected to read, ``at`` when it was set (ms)."""
        return f"vw:{{{self.tag_of(artifact_id)}}}:lv:{artifact_id}"

    @staticmethod
    def views_prefix(tag: str) -> str:
        """``vw:{T}:``, the start of the views keys of tag ``T``: lib/engage.lua appends
        ``vu:``/``v:<artifact>/<version>`` (``version_viewers``/``version_stats``) and
        ``ed:<day>`` (``engage_day``) itself, the version being known only there."""
        return f"vw:{{{tag}}}:"

    @staticmethod
    def engage_reports(tag: str, artifact_id: str) -> str:
        """hash: packed session id -> the session's engaged-time accumulator, as versions
        before the accumulators moved into the session records (``ArtifactKeys.info``,
        elements 5-8: lua/lib/session_record.lua) kept them; the worker's fold
        (lua/stats/engage_fold.lua) still credits and deletes one left there."""
        return f"vw:{{{tag}}}:er:{artifact_id}"

    @staticmethod
    def engage_day(tag: str, day: str) -> str:
        """hash (per partition and UTC day ``YYYY-MM-DD``): ``<artifact>/<version>/<user>``
        -> engaged ms that day (kept ``stats.engagement.DAY_KEEP_MS``)."""
        return f"vw:{{{tag}}}:ed:{day}"

    @staticmethod
    def engage_folds(tag: str) -> str:
        """zset (per partition): packed session id (9 bytes) followed by the artifact id ->
        when that session's engaged-time accumulator (in its session record) is due to be
        credited, for each accumulator holding time (lua/lib/engage.lua)."""
        return f"vw:{{{tag}}}:efold"

    @staticmethod
    def engage_dirty(tag: str) -> str:
        """zset (per partition): ``<day>/<artifact>/<version>/<user>`` -> its engaged ms
        that day, for each total changed since the worker last wrote it to the database."""
        return f"vw:{{{tag}}}:edirty"

    @staticmethod
    def views_stream(tag: str) -> str:
        return f"vw:{{{tag}}}:stream"

    @staticmethod
    def dead_letters(tag: str) -> str:
        return f"vw:{{{tag}}}:dead"

    def user_recent(self, user_id: str) -> str:
        """zset: artifact id -> last view (ms); the user's "recently viewed" cache."""
        return f"rc:{{{self.tag_of(user_id)}}}:{user_id}:z"

    def user_recent_versions(self, user_id: str) -> str:
        """hash: artifact id -> version last viewed, beside ``user_recent``."""
        return f"rc:{{{self.tag_of(user_id)}}}:{user_id}:v"

    @staticmethod
    def hidden_users() -> str:
        """hash: user id -> privacy flags (1 view history hidden, 2 presence hidden), and
        ``~g`` its generation; every API process keeps a copy (``live/privacy.py``)."""
        return "pv:{pv}:hidden"

    def rate_bucket(self, user_id: str, route_class: str) -> str:
        """string: when the user's next token of ``route_class`` is free (ms); on the
        user's slot, so every process and host shares one bucket per user and class."""
        return f"rl:{{{self.tag_of(user_id)}}}:{user_id}/{route_class}"

    # Erasure (presence_svc/privacy): the user's data index and the erasure jobs.

    def user_views_index(self, user_id: str) -> str:
        """set on the USER's slot: ``<artifact>/<version>`` of every version the user ever
        viewed; what erasure walks to find their view records (complete, unlike the capped
        recently-viewed list)."""
        return f"ux:{{{self.tag_of(user_id)}}}:{user_id}:v"

    def user_erasure(self, user_id: str) -> str:
        """string on the USER's slot: the id of the user's erasure while it is pending."""
        return f"er:{{{self.tag_of(user_id)}}}:u:{user_id}"

    @staticmethod
    def erasure(erasure_id: str) -> str:
        """hash: one erasure job (status, times, progress; the user id only while pending).
        Its id starts with the user's tag, so the job lives on the user's slot."""
        tag = erasure_id.partition(".")[0]
        return f"er:{{{tag}}}:j:{erasure_id}"

    @staticmethod
    def erasures_due() -> str:
        """zset: pending erasure id -> when a runner may take it next (ms): a lease."""
        return "er:due"

    @staticmethod
    def erasure_rewrite() -> str:
        """string: set while an AOF rewrite is owed to a finished erasure."""
        return "er:aof"

    @staticmethod
    def erasure_rewrite_window() -> str:
        """string, expiring: set when an AOF rewrite started; none other until it expires."""
        return "er:aof:window"
