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
from presence_svc.keys import ArtifactKeys, Keyspace
from presence_svc.resp import bulk, evalsha_head
from presence_svc.scripts import Call, ScriptArg, Scripts
from presence_svc.settings import Settings

__all__ = [
    "Counts",
    "PresencePage",
    "PresenceRow",
    "PresenceStore",
    "decode_state",
    "pack_session_id",
]

_SESSION_ARGS = 6  # how many ``PresenceStore._heartbeat_args`` returns
_CACHED_HEADS = 16_384
"""Heartbeat heads kept (each ~250-660 bytes: at most ~10 MB). Past it the cache starts
over; a head missing costs its packing once more (about a microsecond)."""


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
    def __init__(self, scripts: Scripts, settings: Settings) -> None:
        self.scripts = scripts
        self.keys = Keyspace(settings.partitions)
        self._timeout = settings.online_timeout_ms
        self._retention = settings.retention_ms
        self._grace = int(settings.leave_grace_s * 1000)
        self._heartbeat_heads: dict[str, bytes] = {}
        self._heartbeat_tail = bulk(self._timeout) + bulk(self._retention)

    def _artifact_keys(self, artifact_id: str) -> list[str]:
        return _script_keys(self.keys.artifact(artifact_id))

    def heartbeat_call(
        self,
        artifact_id: str,
        session_id: str,
        user_id: str,
        version_id: str | None,
        state_blob: bytes | None,
    ) -> Call:
        """The heartbeat script call, for ``heartbeat`` and for pipelines of many."""
        keys = self.keys.artifact(artifact_id)
        session_args = self._heartbeat_args(session_id, user_id, version_id, state_blob)
        return (
            self.scripts.heartbeat,
            _script_keys(keys),
            [artifact_id, keys.channel, *session_args],
        )

    def _heartbeat_args(
        self, session_id: str, user_id: str, version_id: str | None, state_blob: bytes | None
    ) -> tuple[ScriptArg, ...]:
        """The heartbeat's arguments after the artifact's two (its id and channel)."""
        return (
            pack_session_id(session_id),
            user_id,
            version_id or "",
            state_blob or b"",
            self._timeout,
            self._retention,
        )

    def packed_heartbeat(
        self,
        artifact_id: str,
        session_id: str,
        user_id: str,
        version_id: str | None,
        state_blob: bytes | None,
    ) -> bytes:
        """``heartbeat_call`` in RESP. Everything up to the session's arguments is the same
        for every heartbeat on an artifact, so it is packed once per artifact and kept."""
        head = self._heartbeat_heads.get(artifact_id)
        if head is None:
            keys = self.keys.artifact(artifact_id)
            script_keys = _script_keys(keys)
            head = evalsha_head(self.scripts.heartbeat.sha, len(script_keys), 2 + _SESSION_ARGS)
            head += b"".join(map(bulk, (*script_keys, artifact_id, keys.channel)))
            if len(self._heartbeat_heads) >= _CACHED_HEADS:
                self._heartbeat_heads.clear()
            self._heartbeat_heads[artifact_id] = head
        # The session's arguments as ``_heartbeat_args`` has them, in one formatting pass
        # (a test holds the two to the same bytes).
        sid_bytes = pack_session_id(session_id)
        user = user_id.encode()
        version = version_id.encode() if version_id else b""
        state = state_blob or b""
        return b"%b$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n%b" % (
            head,
            len(sid_bytes),
            sid_bytes,
            len(user),
            user,
            len(version),
            version,
            len(state),
            state,
            self._heartbeat_tail,
        )

    async def heartbeat(
        self,
        artifact_id: str,
        session_id: str,
        user_id: str,
        version_id: str | None,
        state_blob: bytes | None,
    ) -> Counts:
        if self.scripts.pipelines:  # the hot path: one call of a coalesced pipeline
            packed = self.packed_heartbeat(artifact_id, session_id, user_id, version_id, state_blob)
            return _counts(await self.scripts.run_packed(self.scripts.heartbeat, packed))
        script, keys, args = self.heartbeat_call(
            artifact_id, session_id, user_id, version_id, state_blob
        )
        return _counts(await self.scripts.run(script, keys, args))

    async def leave(
        self, artifact_id: str, session_id: str, user_id: str, *, grace: bool = False
    ) -> Counts:
        result = await self.scripts.run(
            self.scripts.leave,
            self._artifact_keys(artifact_id),
            [
                artifact_id,
                self.keys.artifact(artifact_id).channel,
                pack_session_id(session_id),
                user_id,
                self._grace if grace else 0,
                self._timeout,
                self._retention,
            ],
        )
        return _counts(result)

    async def online(self, artifact_ids: Sequence[str]) -> dict[str, Counts]:
        """Counts of many artifacts: one script call per partition, all in one pipeline."""
        by_tag: dict[str, list[str]] = defaultdict(list)
        keys_by_tag: dict[str, list[str]] = defaultdict(list)
        for artifact_id in dict.fromkeys(artifact_ids):
            k = self.keys.artifact(artifact_id)
            by_tag[k.tag].append(artifact_id)
            keys_by_tag[k.tag] += (k.sessions, k.info)
        timeout = [self._timeout]
        calls: list[Call] = [(self.scripts.online, keys, timeout) for keys in keys_by_tag.values()]
        results = await self.scripts.run_many(calls)
        out: dict[str, Counts] = {}
        for ids, result in zip(by_tag.values(), results, strict=True):
            if isinstance(result, Exception):
                raise result
            pairs = iter(result)  # online, sessions, online, sessions... (Lua integers)
            for artifact_id, online, sessions in zip(ids, pairs, pairs, strict=True):
                out[artifact_id] = Counts(online, sessions)
        return out

    async def page(self, artifact_id: str, limit: int, cursor: str | None) -> PresencePage:
        after = decode_cursor(cursor) if cursor else None
        k = self.keys.artifact(artifact_id)
        raw = await self.scripts.run(
            self.scripts.presence,
            [k.sessions, k.info],
            [self._timeout, limit, after[0] if after else "", after[1] if after else ""],
        )
        online, sessions, page, has_more = msgspec.msgpack.decode(raw)
        rows = [
            PresenceRow(
                user_id=_text(user),
                version_id=_text(version) or None,
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

        Visits each partition's sweep index (the artifacts holding any session), so it
        costs in proportion to what is stored: fine for an erase, never on a hot path.
        """
        removed = 0
        for tag in self.keys.tags:
            members = await self.scripts.redis.zrange(self.keys.due(tag), 0, -1)
            artifact_ids = [_text(m) for m in members if isinstance(m, str | bytes)]
            for start in range(0, len(artifact_ids), 500):
                calls: list[Call] = []
                for artifact_id in artifact_ids[start : start + 500]:
                    channel = self.keys.artifact(artifact_id).channel
                    calls.append(
                        (
                            self.scripts.erase_user,
                            self._artifact_keys(artifact_id),
                            [artifact_id, channel, user_id, self._timeout, self._retention],
                        )
                    )
                for result in await self.scripts.run_many(calls):
                    if isinstance(result, Exception):
                        raise result
                    removed += int(result)
        return removed


def _script_keys(k: ArtifactKeys) -> list[str]:
    """The keys every presence writer takes, in the order the scripts expect."""
    return [k.sessions, k.info, k.due]


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _counts(result: list[int]) -> Counts:
    if result[0] == -1:
        raise Conflict("this sessionId belongs to another user; use a session id of your own")
    return Counts(int(result[0]), int(result[1]))
