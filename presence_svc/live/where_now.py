"""Where now: the artifacts a user is online on, and the ones they left recently.

The artifacts' keys live on the artifacts' slots, so no artifact script can write an index
on the user's slot. The index (``Keyspace.where_now``) is a superset the service keeps: it
notes ``<artifact>/<session digest>`` after a heartbeat that (re)joined, or whose entry
this process last wrote more than ``refresh`` ago (a dict lookup, no Redis call: the
heartbeat fast path stays one round trip). A read takes the candidates (one read script
on the user's slot, which also gives Redis's clock) and checks each against the
artifact's own keys with plain read commands, all in one pipeline (one round trip on a
single server, one per node on a Cluster): a session is online while its deadline is
ahead (``ZMSCORE``), its info says whose it is and its status (``HMGET``), and the
recently-here list says when the user left (``ZSCORE``). The answer is exact, and the
entries that no longer lead anywhere are dropped.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from redis.exceptions import RedisError

from presence_svc.redis.connection import RedisConnection, as_text
from presence_svc.redis.keys import ArtifactKeys, Keyspace
from presence_svc.settings import Settings

__all__ = ["WHERE_NOW_KEEP", "WhereNow", "WhereNowIndex", "WhereOnline", "WhereRecent"]

log = logging.getLogger(__name__)

WHERE_NOW_KEEP = 256
"""Index entries kept per user (one per session and artifact): online sessions' entries
are rewritten at least every refresh, so past the cap the oldest, left ones go first."""
REFRESH_TIMEOUTS = 10
"""An online session's entry is rewritten every this many online timeouts (7.5 min with
the default 45 s) by each process that serves its heartbeats."""
_INFO = msgspec.msgpack.Decoder(list[Any]).decode
"""A session's info: ``[userId, versionId, stateJson(, flags)]`` (lua/lib/presence.lua)."""
_REASONS = {1: "left", 2: "timeout"}
"""Reason codes in the low bits of a recently-here score: lastSeen (ms) * 4 + code."""
_MEMO_SIZE = 131_072
"""Entries whose last write this process remembers (~100 B each); past it the memo starts
over and each session's next heartbeat writes once more."""


@dataclass(frozen=True, slots=True)
class WhereOnline:
    artifact_id: str
    version_id: str | None
    status: str
    last_seen_ms: int
    sessions: int


@dataclass(frozen=True, slots=True)
class WhereRecent:
    artifact_id: str
    last_seen_ms: int
    reason: str | None


@dataclass(frozen=True, slots=True)
class WhereNow:
    online: list[WhereOnline]
    recent: list[WhereRecent]


class WhereNowIndex:
    def __init__(
        self,
        redis: RedisConnection,
        keys: Keyspace,
        settings: Settings,
        pack: Callable[[str], bytes],
    ) -> None:
        self.redis = redis
        self._pack = pack
        """How the store packs a session id (``live.store.pack_session_id``)."""
        self.keys = keys
        self._scripts = redis.scripts
        self._timeout = settings.online_timeout_ms
        self._away = settings.away_timeout_ms
        self._recent = settings.recent_ms
        self.refresh_s = REFRESH_TIMEOUTS * settings.online_timeout_s
        longest = max(self._timeout, self._away)
        self.lifetime_ms = self._recent + int(self.refresh_s * 1000) + 2 * longest
        """An entry outlives its last write by this: a session online beats at least every
        timeout of its status and its entry is rewritten every refresh, so it outlives the
        session's last heartbeat by the recently-here keep time."""
        self._written: dict[tuple[str, str, str], float] = {}

    @staticmethod
    def member(artifact_id: str, session: bytes) -> str:
        """Index member of a packed session id (``#`` + 8 bytes) on an artifact; ids never
        contain ``/``."""
        return f"{artifact_id}/{session[1:].hex()}"

    def due(self, user_id: str, artifact_id: str, session_id: str, joined: bool) -> bool:
        """Whether :meth:`noted` would write: checked first by the heartbeat, which almost
        never needs to (no coroutine for nothing on the hot path)."""
        if joined:
            return True
        last = self._written.get((user_id, artifact_id, session_id))
        return last is None or time.monotonic() - last >= self.refresh_s

    async def noted(self, user_id: str, artifact_id: str, session_id: str, joined: bool) -> None:
        """After a heartbeat: write the entry if the session joined or is due a refresh.

        Best effort, like the views' recent list: a failure is logged and the entry is
        written at the session's next heartbeat (nothing is remembered as written)."""
        memo = (user_id, artifact_id, session_id)
        now = time.monotonic()
        if not self.due(user_id, artifact_id, session_id, joined):
            return
        call = self._scripts.where_now_add.call(
            self.keys.where_now(user_id),
            self.member(artifact_id, self._pack(session_id)),
            self.lifetime_ms,
            WHERE_NOW_KEEP,
        )
        try:
            await self.redis.run(call)
        except (RedisError, TimeoutError, OSError) as exc:  # a node down or too slow
            log.warning("where-now index not updated", extra={"error": repr(exc)})
            return
        if len(self._written) >= _MEMO_SIZE:
            self._written.clear()
        self._written[memo] = now

    async def read(self, user_id: str) -> WhereNow:
        index = self.keys.where_now(user_id)
        read_at, *members = await self.redis.run(
            self._scripts.where_now_read.call(index, WHERE_NOW_KEEP)
        )
        now = int(read_at)
        candidates: dict[str, list[str]] = defaultdict(list)
        for raw in members:
            member = as_text(raw)
            candidates[member.rpartition("/")[0]].append(member)
        artifact = self.keys.artifact
        looked: list[tuple[ArtifactKeys, list[str]]] = []
        checks: list[tuple[ArtifactKeys, list[bytes]]] = []
        for artifact_id, found in candidates.items():
            try:
                sids = [b"#" + bytes.fromhex(m.rpartition("/")[2]) for m in found]
            except ValueError:  # not an entry this service wrote
                continue
            if any(len(sid) != 9 for sid in sids):  # ditto (session_checks packs 9 bytes)
                continue
            k = artifact(artifact_id)
            looked.append((k, found))
            checks.append((k, sids))
        replies = await self.redis.read_commands(
            self._scripts.session_checks.build(user_id, checks)
        )
        online: list[WhereOnline] = []
        recent: list[WhereRecent] = []
        stale: list[str] = []
        for n, (k, found) in enumerate(looked):
            scores, infos, left = replies[3 * n : 3 * n + 3]
            for reply in (scores, infos, left):
                if isinstance(reply, Exception):
                    raise reply
            place, online_at = self._check(k.artifact_id, user_id, now, scores, infos, left)
            if isinstance(place, WhereOnline):
                online.append(place)
                if place.sessions < len(found):
                    stale += [m for m, on in zip(found, online_at, strict=True) if not on]
            else:
                if place is not None:
                    recent.append(place)
                # a recently-left artifact keeps its newest candidate; otherwise none is kept
                stale += found[1 if place is not None else 0 :]
        if stale:
            await self._prune(index, now, stale)
        online.sort(key=lambda w: (-w.last_seen_ms, w.artifact_id))
        recent.sort(key=lambda w: (-w.last_seen_ms, w.artifact_id))
        return WhereNow(online, recent)

    def _check(
        self,
        artifact_id: str,
        user_id: str,
        now: int,
        scores: list[Any],
        infos: list[Any],
        left: Any,
    ) -> tuple[WhereOnline | WhereRecent | None, list[bool]]:
        """What one artifact's keys say of the user's candidate sessions there: online (the
        most recent session's version, active if any session is), recently left, or
        neither; and which candidates are online. lastSeen is as the presence list says
        it: deadline less the timeout of the session's status; a grace leave that ran out
        was last seen when it did."""
        sessions, best, version, active = 0, -1, "", False
        stale_seen, stale_reason = -1, "timeout"
        online_at = [False] * len(scores)
        for j, (score, raw) in enumerate(zip(scores, infos, strict=True)):
            if score is None or raw is None:
                continue
            info = _INFO(raw)
            if info[0] != user_id:
                continue  # the id is another user's now
            deadline = int(float(score))
            flags = info[3] if len(info) > 3 else 0
            away = bool(flags & 2)  # bits: 1 leaving, 2 away, 4 hidden (lib/presence.lua)
            seen = deadline - (self._away if away else self._timeout)
            if deadline > now:
                online_at[j] = True
                sessions += 1
                active = active or not away
                if seen > best:
                    best, version = seen, info[1]
                continue
            leaving = bool(flags & 1)
            if leaving:
                seen = deadline  # the grace ran out then
            if seen > stale_seen:
                stale_seen, stale_reason = seen, "left" if leaving else "timeout"
        if sessions:
            status = "active" if active else "away"
            return WhereOnline(artifact_id, version or None, status, best, sessions), online_at
        if left is not None:  # settled: the recently-here list says when and why
            code = int(float(left))
            stale_seen, stale_reason = code // 4, _REASONS.get(code % 4, "")
        if stale_seen < now - self._recent:
            return None, online_at
        return WhereRecent(artifact_id, stale_seen, stale_reason or None), online_at

    async def _prune(self, index: str, read_at: int, stale: list[str]) -> None:
        """Best effort: an entry left behind is checked (and offered for pruning) again."""
        try:
            await self.redis.run(self._scripts.where_now_prune.call(index, read_at, stale))
        except (RedisError, TimeoutError, OSError) as exc:  # a node down or too slow
            log.warning("where-now index not pruned", extra={"error": repr(exc)})

    async def erase(self, user_id: str) -> None:
        await self.redis.client.delete(self.keys.where_now(user_id))
        self._written = {m: t for m, t in self._written.items() if m[0] != user_id}
