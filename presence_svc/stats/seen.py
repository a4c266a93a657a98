"""Tier 2: the version an artifact's audience is expected to read, and who has seen it.

The latest version is a small hash on the artifact's slot (``lua/stats/set_latest.lua``).
Who has seen a version is read from the version's viewers hash that ``record_view.lua``
keeps: an entry is msgpack ``[views, firstViewedAt, lastViewedAt, engagedMs?, hidden?]``
(engaged time is added by the engagement work, ``hidden`` by the privacy work: a viewer who
hid their view history is counted, never listed, and kept out of the by-time zset).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from presence_svc.cursors import decode_cursor, encode_cursor
from presence_svc.redis.connection import RedisConnection, as_text
from presence_svc.redis.keys import Keyspace
from presence_svc.redis.seen_reads import SeenReads
from presence_svc.settings import Settings

__all__ = ["Latest", "SeenCheck", "SeenPage", "SeenStore", "SeenViewer", "ViewerEntry"]


@dataclass(frozen=True, slots=True)
class Latest:
    version_id: str
    set_at_ms: int


@dataclass(frozen=True, slots=True)
class ViewerEntry:
    """One entry of a version's viewers hash, decoded."""

    views: int
    first_viewed_at_ms: int
    last_viewed_at_ms: int
    engaged_ms: int
    hidden: bool

    @classmethod
    def decode(cls, raw: bytes | list[Any]) -> ViewerEntry:
        values = msgspec.msgpack.decode(raw) if isinstance(raw, bytes) else raw
        engaged = values[3] if len(values) > 3 else 0
        hidden = bool(values[4]) if len(values) > 4 else False
        return cls(int(values[0]), int(values[1]), int(values[2]), int(engaged or 0), hidden)


@dataclass(frozen=True, slots=True)
class SeenViewer:
    user_id: str
    entry: ViewerEntry
    read: bool


@dataclass(frozen=True, slots=True)
class SeenPage:
    version_id: str
    seen: int
    read: int
    hidden: int
    viewers: list[SeenViewer]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class SeenCheck:
    """An audience check: each list the ids in the order given, as a whole JSON or msgpack
    array (encoded by the script); ``hidden`` the viewers who hid their history."""

    version_id: str
    seen: bytes
    read: bytes
    not_seen: bytes
    hidden: int


def _int(value: object) -> int:
    return int(value) if isinstance(value, bytes | str | int) and value != b"" else 0


class SeenStore:
    def __init__(self, redis: RedisConnection, settings: Settings) -> None:
        self.redis = redis
        self.keys = Keyspace(settings.partitions)
        self.reads = SeenReads(self.keys)
        self.read_after_ms = settings.read_after_ms

    async def set_latest(self, artifact_id: str, version_id: str) -> Latest:
        call = self.redis.scripts.set_latest.call(self.keys, artifact_id, version_id)
        return Latest(version_id, int(await self.redis.run(call)))

    async def latest(self, artifact_ids: Sequence[str]) -> dict[str, Latest]:
        """The latest version of each artifact that has one: one ``HMGET`` apiece, all in
        one round trip (one per node on a Cluster)."""
        ids = list(dict.fromkeys(artifact_ids))
        commands = self.reads.latest(ids)
        found: dict[str, Latest] = {}
        for artifact_id, answer in zip(ids, await self.redis.read_commands(commands), strict=True):
            if isinstance(answer, Exception):
                raise answer
            version, at = answer
            if version is not None:
                found[artifact_id] = Latest(as_text(version), _int(at))
        return found

    async def page(
        self,
        artifact_id: str,
        version_id: str,
        limit: int,
        cursor: str | None,
        own_user_id: str = "",
    ) -> SeenPage:
        """Counts of the version's viewers and one page of them, most recent view first;
        ``own_user_id`` (the caller) sees their own row even when their history is hidden,
        as in the viewers list."""
        after = decode_cursor(cursor) if cursor else None
        counts = self.reads.counts(artifact_id, version_id)
        call = self.redis.scripts.viewers.call(
            self.keys, artifact_id, version_id, limit, after, own_user_id
        )
        raw = await self.redis.run(call)
        answers = await self.redis.read_commands(counts)
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        seen, listed, readers, erased = answers
        rows, has_more, *rest = msgspec.msgpack.decode(raw)
        entries = [(as_text(user), ViewerEntry.decode(info)) for user, info in (rows or [])]
        viewers = [
            SeenViewer(user, entry, entry.engaged_ms >= self.read_after_ms)
            for user, entry in entries
            if not entry.hidden or user == own_user_id  # only the caller's own hidden row
        ]
        next_cursor = None
        if has_more and entries:
            user, last = entries[-1]
            next_cursor = encode_cursor(last.last_viewed_at_ms, user)
        return SeenPage(
            version_id=version_id,
            seen=int(seen),
            read=_int(readers),
            # viewers.lua's count leaves out the caller's own row when it lists it
            hidden=int(rest[0]) if rest else max(0, int(seen) - int(listed) - _int(erased)),
            viewers=viewers,
            next_cursor=next_cursor,
        )

    async def check(
        self, artifact_id: str, version_id: str | None, user_ids: bytes, *, json: bool
    ) -> SeenCheck | None:
        """Which of ``user_ids`` (valid ids joined by newlines) have seen and read the
        version (``None``: the artifact's latest; ``None`` back when it has none), in one
        script call (lua/stats/seen_check.lua): the latest version, one ``HMGET`` and the
        sorting happen in Redis, which answers each list as a whole JSON (``json``) or
        msgpack array, so no id is decoded or encoded here."""
        call = self.redis.scripts.seen_check.call(
            self.keys, artifact_id, version_id, self.read_after_ms, user_ids, json=json
        )
        found = await self.redis.run(call)
        if found is None:
            return None
        version, hidden, seen, read, not_seen = found
        return SeenCheck(as_text(version), seen, read, not_seen, int(hidden))

    async def unseen(self, user_id: str, artifact_ids: Sequence[str]) -> list[tuple[str, Latest]]:
        """The artifacts of ``artifact_ids`` with a latest version ``user_id`` has not
        viewed, in the order given: two round trips (latest versions, then one ``HEXISTS``
        per artifact that has one), whatever the number of partitions."""
        latest = await self.latest(artifact_ids)
        pending = list(latest.items())
        if not pending:
            return []
        versions = [(a, found.version_id) for a, found in pending]
        answers = await self.redis.read_commands(self.reads.viewed(versions, user_id))
        out: list[tuple[str, Latest]] = []
        for (artifact_id, found), answer in zip(pending, answers, strict=True):
            if isinstance(answer, Exception):
                raise answer
            if not int(answer):
                out.append((artifact_id, found))
        return out
