"""Where now: the artifacts a user is online on, and the ones they left recently.

The artifacts' keys live on the artifacts' slots, so no artifact script can write an index
on the user's slot. The index (``Keyspace.where_now``) is a superset the service keeps: it
notes ``<artifact>/<session digest>`` after a heartbeat that (re)joined, or whose entry
this process last wrote more than ``refresh`` ago (a dict lookup, no Redis call: the
heartbeat fast path stays one round trip). A read takes the candidates and checks each
against the artifact's own keys (one script call per partition, all in one pipeline), so
the answer is exact, and drops the entries that no longer lead anywhere.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

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
_Answer = tuple[int, int, str, str, int, str, list[int]]
"""One artifact's answer from ``lua/live/where_now.lua``."""
_DECODE = msgspec.msgpack.Decoder(list[_Answer]).decode
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
        self._recent = settings.recent_ms
        self.refresh_s = REFRESH_TIMEOUTS * settings.online_timeout_s
        self.lifetime_ms = self._recent + int(self.refresh_s * 1000) + 2 * self._timeout
        """An entry outlives its last write by this: a session online beats at least every
        timeout and its entry is rewritten every refresh, so it outlives the session's
        last heartbeat by the recently-here keep time."""
        self._written: dict[tuple[str, str, str], float] = {}

    @staticmethod
    def member(artifact_id: str, session: bytes) -> str:
        """Index member of a packed session id (``#`` + 8 bytes) on an artifact; ids never
        contain ``/``."""
        return f"{artifact_id}/{session[1:].hex()}"

    async def noted(self, user_id: str, artifact_id: str, session_id: str, joined: bool) -> None:
        """After a heartbeat: write the entry if the session joined or is due a refresh.

        Best effort, like the views' recent list: a failure is logged and the entry is
        written at the session's next heartbeat (nothing is remembered as written)."""
        memo = (user_id, artifact_id, session_id)
        now = time.monotonic()
        last = self._written.get(memo)
        if not joined and last is not None and now - last < self.refresh_s:
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
        candidates: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
        for raw in members:
            member = as_text(raw)
            artifact_id, _, digest = member.rpartition("/")
            try:
                candidates[artifact_id].append((member, b"#" + bytes.fromhex(digest)))
            except ValueError:
                continue
        by_tag: dict[str, list[tuple[ArtifactKeys, list[tuple[str, bytes]]]]]
        by_tag = defaultdict(list)
        for artifact_id, found in candidates.items():
            k = self.keys.artifact(artifact_id)
            by_tag[k.tag].append((k, found))
        check = self._scripts.where_now.call
        calls = [
            check([(k, [s for _, s in found]) for k, found in group], *self._check_args(user_id))
            for group in by_tag.values()
        ]
        # run_each, not run_many: on one server the calls join the loop turn's batch on
        # the pipelined connection with other requests' calls, rather than each request
        # borrowing a pooled connection for its own pipeline (several times slower under
        # load).
        results = await self.redis.run_each(calls)
        online: list[WhereOnline] = []
        recent: list[WhereRecent] = []
        stale: list[str] = []
        for group, result in zip(by_tag.values(), results, strict=True):
            if isinstance(result, Exception):
                raise result
            for (k, found), answer in zip(group, _DECODE(result), strict=True):
                is_online, seen, version, status, sessions, reason, prune = answer
                stale.extend(found[j - 1][0] for j in prune)
                if is_online:
                    online.append(
                        WhereOnline(k.artifact_id, version or None, status, seen, sessions)
                    )
                elif seen >= 0:
                    recent.append(WhereRecent(k.artifact_id, seen, reason or None))
        if stale:
            await self._prune(index, int(read_at), stale)
        online.sort(key=lambda w: (-w.last_seen_ms, w.artifact_id))
        recent.sort(key=lambda w: (-w.last_seen_ms, w.artifact_id))
        return WhereNow(online, recent)

    def _check_args(self, user_id: str) -> tuple[int, int, str]:
        return self._timeout, self._recent, user_id

    async def _prune(self, index: str, read_at: int, stale: list[str]) -> None:
        """Best effort: an entry left behind is checked (and offered for pruning) again."""
        try:
            await self.redis.run(self._scripts.where_now_prune.call(index, read_at, stale))
        except (RedisError, TimeoutError, OSError) as exc:  # a node down or too slow
            log.warning("where-now index not pruned", extra={"error": repr(exc)})

    async def erase(self, user_id: str) -> None:
        await self.redis.client.delete(self.keys.where_now(user_id))
        self._written = {m: t for m, t in self._written.items() if m[0] != user_id}
