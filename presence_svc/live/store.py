"""Tier 1, live presence: the operations on Redis behind the presence endpoints.

Each operation is one atomic Lua script on the artifact's hash slot; batch reads group
artifacts by partition and send one script call per partition in one pipeline.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

import msgspec

from presence_svc.cursors import decode_cursor, encode_cursor
from presence_svc.errors import Conflict
from presence_svc.live.recent import RecentList
from presence_svc.live.where_now import WhereNowIndex
from presence_svc.redis.connection import RedisConnection, as_text
from presence_svc.redis.keys import ArtifactKeys, Keyspace
from presence_svc.redis.scripts import ScriptCall
from presence_svc.settings import Settings

__all__ = [
    "Counts",
    "PresencePage",
    "PresenceRow",
    "PresenceStore",
    "decode_state",
    "pack_session_id",
]


class Counts(msgspec.Struct, frozen=True, gc=False):
    """Online users and sessions of one artifact. A Struct, not a dataclass: a batch read
    makes 1 000 of them, and it encodes as is (``{"online", "sessions"}``, the shape of
    ``schemas.OnlineCounts``)."""

    online: int
    sessions: int


@dataclass(frozen=True, slots=True)
class PresenceRow:
    user_id: str
    version_id: str | None
    state: dict[str, Any] | None
    last_seen_ms: int
    sessions: int


@dataclass(frozen=True, slots=True)
class PresencePage:
    counts: Counts
    rows: list[PresenceRow]
    next_cursor: str | None


def decode_state(blob: str | bytes) -> dict[str, Any] | None:
    """Session state is kept as compact JSON text (Lua's msgpack has only text strings)."""
    if not blob:
        return None
    value = msgspec.json.decode(blob)
    return value if isinstance(value, dict) else None


def pack_session_id(session_id: str) -> bytes:
    """How a session id is stored in Redis (twice per session: zset member, hash field).

    ``#`` + an 8-byte BLAKE2b digest of the id, whatever its form: 64 bits tell apart the
    sessions of one artifact (a collision among even 10 000 of them has odds of about
    1 in 4 * 10^11; it would only make the later session's heartbeat a 409), and the
    digest spreads structured ids (time-ordered UUIDs) as well as random ones. Half the
    bytes of the 16 an SDK id holds: 16 bytes less Redis memory per session. The info
    hash also holds one field per online user, named by the bare user id, and its own
    ``~`` fields: user ids never start with ``#`` or ``~``, so no field can take
    another's place. Session ids never leave Redis, so nothing unpacks them.
    """
    return b"#" + blake2b(session_id.encode(), digest_size=8).digest()


class PresenceStore:
    def __init__(self, redis: RedisConnection, settings: Settings) -> None:
        self.redis = redis
        self.keys = Keyspace(settings.partitions)
        self._scripts = redis.scripts
        self._timeout = settings.online_timeout_ms
        self._retention = settings.retention_ms
        self._grace = int(settings.leave_grace_s * 1000)
        self.where_now = WhereNowIndex(redis, self.keys, settings, pack_session_id)
        self.recent = RecentList(redis, self.keys, settings)

    def heartbeat_call(
        self,
        artifact_id: str,
        session_id: str,
        user_id: str,
        version_id: str | None,
        state_blob: bytes | None,
    ) -> ScriptCall:
        """The heartbeat script call, for ``heartbeat`` and for pipelines of many."""
        return self._scripts.heartbeat.call(
            self.keys.artifact(artifact_id),
            self._timeout,
            self._retention,
            pack_session_id(session_id),
            user_id,
            version_id or "",
            state_blob or b"",
        )

    async def heartbeat(
        self,
        artifact_id: str,
        session_id: str,
        user_id: str,
        version_id: str | None,
        state_blob: bytes | None,
    ) -> Counts:
        call = self.heartbeat_call(artifact_id, session_id, user_id, version_id, state_blob)
        result = await self.redis.run(call)
        counts = _counts(result)
        # where-now: a third element says the session (re)joined (lua/live/heartbeat.lua)
        await self.where_now.noted(user_id, artifact_id, session_id, len(result) > 2)
        return counts

    async def leave(
        self, artifact_id: str, session_id: str, user_id: str, *, grace: bool = False
    ) -> Counts:
        call = self._scripts.leave.call(
            self.keys.artifact(artifact_id),
            self._timeout,
            self._retention,
            pack_session_id(session_id),
            user_id,
            self._grace if grace else 0,
        )
        return _counts(await self.redis.run(call))

    async def online(self, artifact_ids: Sequence[str]) -> dict[str, Counts]:
        """Counts of many artifacts: one script call per partition, all in one pipeline."""
        by_tag: dict[str, list[ArtifactKeys]] = defaultdict(list)
        for artifact_id in dict.fromkeys(artifact_ids):
            k = self.keys.artifact(artifact_id)
            by_tag[k.tag].append(k)
        online = self._scripts.online
        calls = [online.call(artifacts, self._timeout) for artifacts in by_tag.values()]
        results = await self.redis.run_many(calls)
        out: dict[str, Counts] = {}
        for artifacts, result in zip(by_tag.values(), results, strict=True):
            if isinstance(result, Exception):
                raise result
            pairs = iter(result)  # online, sessions, online, sessions... (Lua integers)
            for k, users, sessions in zip(artifacts, pairs, pairs, strict=True):
                out[k.artifact_id] = Counts(users, sessions)
        return out

    async def page(self, artifact_id: str, limit: int, cursor: str | None) -> PresencePage:
        after = decode_cursor(cursor) if cursor else None
        call = self._scripts.presence.call(
            self.keys.artifact(artifact_id), self._timeout, limit, after
        )
        online, sessions, page, has_more = msgspec.msgpack.decode(await self.redis.run(call))
        rows = [
            PresenceRow(
                user_id=as_text(user),
                version_id=as_text(version) or None,
                state=decode_state(state),
                last_seen_ms=int(seen),
                sessions=int(count),
            )
            for user, version, state, seen, count in (page or [])
        ]
        next_cursor = None
        if has_more and rows:
            next_cursor = encode_cursor(rows[-1].last_seen_ms, rows[-1].user_id)
        return PresencePage(Counts(int(online), int(sessions)), rows, next_cursor)

    async def erase_user(self, user_id: str) -> int:
        """Remove every session of ``user_id`` on every artifact; returns how many.

        Visits each partition's sweep index (the artifacts holding any session) and its
        recently-here index (artifacts whose recent list is still kept), so it costs in
        proportion to what is stored: fine for an erase, never on a hot path. Also takes
        the user out of those recent lists and deletes their where-now index.
        """
        removed = 0
        erase = self._scripts.erase_user
        for tag in self.keys.tags:
            # artifacts with sessions, and those whose recently-here list is still kept
            pipe = self.redis.client.pipeline(transaction=False)
            pipe.zrange(self.keys.due(tag), 0, -1)
            pipe.zrange(self.keys.recent_due(tag), 0, -1)
            members = [m for found in await pipe.execute() for m in found]
            texts = (as_text(m) for m in members if isinstance(m, str | bytes))
            artifact_ids = list(dict.fromkeys(texts))
            for start in range(0, len(artifact_ids), 500):
                calls = [
                    erase.call(self.keys.artifact(a), self._timeout, self._retention, user_id)
                    for a in artifact_ids[start : start + 500]
                ]
                for result in await self.redis.run_many(calls):
                    if isinstance(result, Exception):
                        raise result
                    removed += int(result)
        await self.where_now.erase(user_id)
        return removed


def _counts(result: list[int]) -> Counts:
    if result[0] == -1:
        raise Conflict("this sessionId belongs to another user; use a session id of your own")
    return Counts(int(result[0]), int(result[1]))
