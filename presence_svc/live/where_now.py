"""Where now: the artifacts a user is online on, and the ones they left recently.

The artifacts' keys live on the artifacts' slots, so no artifact script can write an index
on the user's slot. The index (``Keyspace.where_now``) is a superset the service keeps: it
notes ``<artifact>/<session digest>`` after a heartbeat that (re)joined, or whose entry
this process last wrote more than ``refresh`` ago (a dict lookup, no Redis call: the
heartbeat fast path stays one round trip). A read takes the candidates (one read script
on the user's slot, which also gives Redis's clock; only the clock when the index's
generation says no member came or went since this process last read them) and checks
each against the artifact's own keys with plain read commands, all in one pipeline (one
round trip on a single server, one per node on a Cluster): a session is online while its deadline is
ahead (``ZMSCORE``), its info says whose it is and its status (``HMGET``), and the
recently-here list says when the user left (``ZSCORE``). The answer is exact, and the
entries that no longer lead anywhere are dropped. A poll with nothing written since the
last answer is confirmed by the sessions' deadlines alone (``_Kept.quiet``: one command per
artifact).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from operator import itemgetter
from typing import Any, Literal, NamedTuple, TypeAlias

import msgspec
from redis.exceptions import RedisError

from presence_svc.lru import Lru
from presence_svc.redis.connection import Commands, RedisConnection
from presence_svc.redis.keys import Keyspace
from presence_svc.schemas import WhereOnlineOut, WhereRecentOut
from presence_svc.settings import Settings
from presence_svc.timefmt import to_iso

__all__ = ["WHERE_NOW_KEEP", "WhereNow", "WhereNowIndex"]

log = logging.getLogger(__name__)

WHERE_NOW_KEEP = 256
"""Index entries kept per user (one per session and artifact): online sessions' entries
are rewritten at least every refresh, so past the cap the oldest, left ones go first."""
REFRESH_TIMEOUTS = 10
"""An online session's entry is rewritten every this many online timeouts (7.5 min with
the default 45 s) by each process that serves its heartbeats."""
_INFO = msgspec.msgpack.Decoder(list[Any]).decode
"""A session's info: ``[userId, versionId, stateJson(, flags)]`` (lua/lib/presence.lua)."""
_REASONS: dict[int, Literal["left", "timeout"]] = {1: "left", 2: "timeout"}
"""Reason codes in the low bits of a recently-here score: lastSeen (ms) * 4 + code."""
_FIRST_TWO = itemgetter(0, 1)
"""Rows sort by (-lastSeen, artifactId)."""
_MEMO_SIZE = 131_072
"""Entries whose last write this process remembers (~100 B each); past it the memo starts
over and each session's next heartbeat writes once more."""
_PLANS_KEPT = 1024
"""Users whose index a process keeps parsed, with its check packed, and whose last answer
it keeps (each some 1-2 KB for a user on a few artifacts, 25 KB on 50, 100 KB for the
most an index holds); past it the least recently asked about goes first. Starting over
instead made a process asked about more users than this miss nearly every read (the
where-now bench, 400 users: 605 µs of CPU per read)."""
_CACHE_BYTES = 24 * 1024 * 1024
"""Bytes each of the three caches (indexes read, plans, answers) may hold at most per
process (as their ``_*_weight`` counts them), whatever the number of users: 1 024 users on
50 artifacts each fit (a plan weighs 15.7 KB, the index 1.6 KB, the answer 7 KB), 1 024
at the most an index holds (256 entries) would not."""
_Memo: TypeAlias = "tuple[str, int, bytes]"
"""A plan's key: the user, the fresh count and the index's members as read."""
_Plan: TypeAlias = "tuple[list[tuple[str, list[bytes], bool]], Commands, Commands]"
"""The candidates per artifact and whether it is likely online, the commands that check
them (2 per artifact likely online, 3 per other), and their deadlines alone (1 each)."""
QUIET_MS = 200
"""A kept answer may be confirmed by its sessions' deadlines alone (``_Kept.quiet``) when
each session last beat at least this long before the read that made it: a heartbeat
after that read sets a later deadline than any of them, so equal deadlines mean nothing
was written since. The margin covers the clocks of a Cluster's nodes (the read's time is
the user's node's, a deadline the artifact's)."""
_MOVED_KEPT = 4_096
"""Users whose deadlines-only check last found something moved, remembered (then the next
read checks everything at once, as before); past it the set starts over."""
_UNREAD = object()
"""An artifact's recently-here entry not asked for (it was likely online)."""


class WhereNow(msgspec.Struct, frozen=True, kw_only=True):
    """The answer's rows, as they go on the wire, most recent first."""

    online: list[WhereOnlineOut]
    recent: list[WhereRecentOut]
    bodies: dict[bool, bytes] = msgspec.field(default_factory=dict)
    """What the HTTP layer sent it as, by wire format (msgpack or not): an answer kept and
    given again (a poll with nothing moved) is sent without encoding its rows again."""


class _Kept(NamedTuple):
    """The last answer of a plan whose sessions were all online."""

    seen: tuple[Any, ...]
    """The artifacts' answers it was made of (deadlines and infos, in order)."""
    first: int
    """The first of their deadlines: past it a session may have timed out unwritten."""
    answer: WhereNow
    beat: int
    """Its sessions' last heartbeat (ms), ``_NEVER`` if one is away (an away session's
    deadline could be met again by an active heartbeat later on)."""
    quiet: list[list[Any]] | None
    """Its deadlines alone, once they are enough to tell that nothing was written since:
    a read that found it as it is came ``QUIET_MS`` after ``beat``; else None."""


_NEVER = 2**62
"""A heartbeat time no read comes ``QUIET_MS`` after."""


def _lists(answers: tuple[Any, ...]) -> list[list[Any]]:
    """Answers as the connection gives them (lists), to compare a new read with as is."""
    return [list(a) for a in answers]


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
        self.fresh_ms = int(self.refresh_s * 1000) + 2 * longest
        """An entry written longer ago than this is not an online session's (those are
        rewritten every refresh and beat at least every timeout of their status): a hint
        only, the read stays exact if it is wrong (one more round trip)."""
        self._written: dict[tuple[str, str, str], float] = {}
        self._plans: Lru[_Memo, _Plan] = Lru(_PLANS_KEPT, _CACHE_BYTES, _plan_weight)
        """(user, fresh count, the index as read) -> its plan: a user's index changes at
        joins and prunes, and is read unchanged in between (a dashboard polling it)."""
        self._last: Lru[str, tuple[bytes, _Memo]] = Lru(_PLANS_KEPT, _CACHE_BYTES, _last_weight)
        """User -> the index's generation when this process last read its members, and
        the plan key they made: the same generation again means the same members."""
        self._kept: Lru[_Memo, _Kept] = Lru(_PLANS_KEPT, _CACHE_BYTES, _kept_weight)
        """Per plan, the last answer whose sessions were all online. The same answers
        again before the first deadline make the same rows (a user polled between
        heartbeats); with ``quiet``, the same deadlines do (one command per artifact)."""
        self._moved: set[str] = set()
        """Users whose last deadlines-only check found a change: read in full next."""

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
            self.keys.where_now_generation(user_id),
            self.member(artifact_id, self._pack(session_id)),
            self.lifetime_ms,
            WHERE_NOW_KEEP,
            joined,
        )
        try:
            await self.redis.run(call)
        except (RedisError, TimeoutError, OSError) as exc:  # a node down or too slow
            log.warning("where-now index not updated", extra={"error": repr(exc)})
            return
        if len(self._written) >= _MEMO_SIZE:
            self._written.clear()
        self._written[memo] = now

    def _plan(
        self, user_id: str, fresh: int, joined: bytes, online: set[str] | None = None
    ) -> _Plan:
        """The candidates per artifact (index members, newest first: mostly one each),
        whether it is likely online (one of them is among the ``fresh`` first, or it is
        one of ``online``, what a read of them found), and the commands that check them,
        for an index that reads ``joined``."""
        found: dict[str, list[bytes]] = {}
        sids: dict[str, list[bytes]] = {}
        likely: set[str] = set()
        for n, member in enumerate(joined.split(b"\n") if joined else ()):
            artifact_id, _, digest = member.decode().rpartition("/")
            try:
                sid = b"#" + bytes.fromhex(digest)
            except ValueError:
                continue  # not an entry this service wrote: never followed nor pruned
            if not artifact_id or len(sid) != 9:
                continue  # ditto
            if (n < fresh) if online is None else (artifact_id in online):
                likely.add(artifact_id)
            if artifact_id in found:
                found[artifact_id].append(member)
                sids[artifact_id].append(sid)
            else:
                found[artifact_id] = [member]
                sids[artifact_id] = [sid]
        artifact = self.keys.artifact
        checks = [(artifact(a), s, a not in likely) for a, s in sids.items()]
        candidates = [(a, found[a], a in likely) for a in found]
        session_checks = self._scripts.session_checks
        deadlines = session_checks.deadlines([(k, s) for k, s, _ in checks])
        plan = (candidates, session_checks.build(user_id, checks), deadlines)
        self._plans.put((user_id, fresh, joined), plan)
        return plan

    async def _index(self, user_id: str, index: str, generation: str) -> tuple[int, _Memo]:
        """Redis's clock and the plan key of the user's index as it is now: the members
        read (``_remember``), unless its generation says none came or went since this
        process last read them (then they are not sent again)."""
        last = self._last.get(user_id)
        known = b"" if last is None else last[0]
        read = await self.redis.run(
            self._scripts.where_now_read.call(
                index, generation, WHERE_NOW_KEEP, self.fresh_ms, known
            )
        )
        if len(read) == 1 and last is not None:
            return int(read[0]), last[1]
        memo = (user_id, int(read[1]), read[3])
        self._remember(user_id, read[2], memo)
        return int(read[0]), memo

    async def read(self, user_id: str) -> WhereNow:
        index = self.keys.where_now(user_id)
        generation = self.keys.where_now_generation(user_id)
        now, memo = await self._index(user_id, index, generation)
        _, fresh, joined = memo
        found, commands, deadlines = self._plans.get(memo) or self._plan(user_id, fresh, joined)
        kept = self._kept.get(memo)
        if kept is not None and now < kept.first and await self._still(user_id, kept, deadlines):
            return kept.answer
        replies = await self._answers(commands)
        seen = None
        if len(replies) == 2 * len(found):  # every artifact likely online: 2 lists each
            seen = tuple(map(tuple, replies))
        if kept is not None and now < kept.first and kept.seen == seen:
            self._moved.discard(user_id)  # unchanged: the deadlines may do next time
            if kept.quiet is None and kept.beat <= now - QUIET_MS:
                self._kept.put(memo, kept._replace(quiet=_lists(seen[::2])))
            return kept.answer
        online: list[tuple[int, str, WhereOnlineOut]] = []
        recent: list[tuple[int, str, WhereRecentOut]] = []
        stale: list[bytes] = []
        unsure: list[tuple[str, list[bytes], Any, Any]] = []
        at = 0
        for artifact_id, candidates, likely in found:
            scores, infos = replies[at], replies[at + 1]
            left = _UNREAD if likely else replies[at + 2]
            at += 2 if likely else 3
            if not self._check(
                artifact_id, candidates, user_id, now, scores, infos, left, online, recent, stale
            ):
                unsure.append((artifact_id, candidates, scores, infos))
        if unsure:  # likely online, but not: when and why it was left
            artifact = self.keys.artifact
            asked = self._scripts.session_checks.recent(user_id, [artifact(u[0]) for u in unsure])
            for (a, candidates, scores, infos), left in zip(
                unsure, await self._answers(asked), strict=True
            ):
                self._check(a, candidates, user_id, now, scores, infos, left, online, recent, stale)
        if stale:
            await self._prune(index, generation, now, stale)
        self._learn(memo, found, {row[1] for row in online})
        online.sort(key=_FIRST_TWO)
        recent.sort(key=_FIRST_TWO)
        found_now = WhereNow(online=[r[2] for r in online], recent=[r[2] for r in recent])
        if seen is not None and not stale and not unsure and not recent:
            # every candidate online: the same answers say the same until one of them
            # may have timed out (the first deadline)
            first = min(
                (int(float(x)) for scores in replies[::2] for x in scores if x is not None),
                default=now,
            )
            beat = self._beat(seen)
            quiet = _lists(seen[::2]) if beat <= now - QUIET_MS else None
            self._kept.put(memo, _Kept(seen, first, found_now, beat, quiet))
        return found_now

    def _remember(self, user_id: str, generation: bytes, memo: _Memo) -> None:
        """The plan key of the members read at ``generation`` (none without one)."""
        if not generation:
            self._last.pop(user_id)
            return
        self._last.put(user_id, (generation, memo))

    def _learn(
        self, memo: _Memo, found: list[tuple[str, list[bytes], bool]], online: set[str]
    ) -> None:
        """If a read of the plan ``found`` found other artifacts online than it took for
        likely, its plan asks from now on as if those are: the fresh count is a hint from
        when the index was read, and with its generation unchanged it is not read again
        (an artifact left since would otherwise cost every poll a second round trip)."""
        if online != {artifact for artifact, _, likely in found if likely}:
            user_id, fresh, joined = memo
            self._plan(user_id, fresh, joined, online)

    async def _still(self, user_id: str, kept: _Kept, deadlines: Commands) -> bool:
        """Whether the deadlines alone say ``kept`` still holds (one command per artifact);
        False, asking nothing, when they cannot tell or last found the user beating
        between reads (then everything is asked at once, as it would have been)."""
        if kept.quiet is None or user_id in self._moved:
            return False
        if await self.redis.read_in_turn(deadlines) == kept.quiet:
            return True  # an error answer is never equal: the full read raises it
        if len(self._moved) >= _MOVED_KEPT:
            self._moved.clear()
        self._moved.add(user_id)
        return False

    def _beat(self, seen: tuple[Any, ...]) -> int:
        """The last heartbeat of an answer's sessions, all online (``seen``: deadlines and
        infos of each artifact in turn), or ``_NEVER`` if one is away. Active, a session's
        deadline is its last heartbeat + the online timeout, so a heartbeat ``QUIET_MS``
        after a read that saw them sets a later deadline, active or away; a grace leave
        may keep a deadline, but changes no online row."""
        latest = 0
        for scores, infos in zip(seen[::2], seen[1::2], strict=True):
            for score, raw in zip(scores, infos, strict=True):
                info = _INFO(raw)
                if len(info) > 3 and info[3] & 2:
                    return _NEVER
                latest = max(latest, int(float(score)) - self._timeout)
        return latest

    async def _answers(self, commands: Commands) -> list[Any]:
        replies = await self.redis.read_in_turn(commands)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def _check(
        self,
        artifact_id: str,
        candidates: list[bytes],
        user_id: str,
        now: int,
        scores: list[Any],
        infos: list[Any],
        left: Any,
        online: list[tuple[int, str, WhereOnlineOut]],
        recent: list[tuple[int, str, WhereRecentOut]],
        stale: list[bytes],
    ) -> bool:
        """What one artifact's keys say of the user's candidate sessions there: online (the
        most recent session's version, active if any session is) or recently left (each
        with its sort key), or neither; and the candidates that lead nowhere, to prune.
        lastSeen is as the presence list says it: deadline less the timeout of the
        session's status; a grace leave that ran out was last seen when it did. False
        (and nothing done) when it needs the recently-here entry, which was not read."""
        sessions, best, version, active = 0, -1, None, False
        stale_seen, stale_reason = -1, 2
        gone: list[bytes] = []
        for member, score, raw in zip(candidates, scores, infos, strict=True):
            info = _INFO(raw) if score is not None and raw is not None else None
            if info is None or info[0] != user_id:  # gone, or another user's id now
                gone.append(member)
                continue
            deadline = int(float(score))
            flags = info[3] if len(info) > 3 else 0
            away = flags & 2  # bits: 1 leaving, 2 away, 4 hidden (lib/presence.lua)
            seen = deadline - (self._away if away else self._timeout)
            if deadline > now:
                sessions += 1
                active = active or not away
                if seen > best:
                    best, version = seen, info[1] or None
                continue
            gone.append(member)
            if flags & 1:  # leaving: last seen when the grace ran out
                seen = deadline
            if seen > stale_seen:
                stale_seen, stale_reason = seen, 1 if flags & 1 else 2
        if sessions:
            status: Literal["active", "away"] = "active" if active else "away"
            row = WhereOnlineOut(
                artifact_id=artifact_id,
                version_id=version,
                status=status,
                last_seen=to_iso(best),
                sessions=sessions,
            )
            online.append((-best, artifact_id, row))
            stale += gone
            return True
        if left is _UNREAD:
            return False
        if left is not None:  # settled: the recently-here list says when and why
            code = int(float(left))
            stale_seen, stale_reason = code // 4, code % 4
        if stale_seen < now - self._recent:
            stale += candidates
            return True
        reason = _REASONS.get(stale_reason)
        gone_row = WhereRecentOut(
            artifact_id=artifact_id, last_seen=to_iso(stale_seen), reason=reason
        )
        recent.append((-stale_seen, artifact_id, gone_row))
        stale += candidates[1:]  # a recently-left artifact keeps its newest candidate
        return True

    async def _prune(self, index: str, generation: str, read_at: int, stale: list[bytes]) -> None:
        """Best effort: an entry left behind is checked (and offered for pruning) again."""
        call = self._scripts.where_now_prune.call(index, generation, read_at, stale)
        try:
            await self.redis.run(call)
        except (RedisError, TimeoutError, OSError) as exc:  # a node down or too slow
            log.warning("where-now index not pruned", extra={"error": repr(exc)})

    async def erase(self, user_id: str) -> None:
        await self.redis.client.delete(
            self.keys.where_now(user_id), self.keys.where_now_generation(user_id)
        )
        self._written = {m: t for m, t in self._written.items() if m[0] != user_id}
        self._plans.drop_if(lambda k: k[0] == user_id)
        self._kept.drop_if(lambda k: k[0] == user_id)
        self._moved.discard(user_id)
        self._last.pop(user_id)


def _plan_weight(memo: _Memo, plan: _Plan) -> int:
    """A plan's bytes, roughly: the index as read, its packed commands, and some 100
    bytes of objects per artifact."""
    found, commands, deadlines = plan
    return len(memo[2]) + len(commands.packed) + len(deadlines.packed) + 100 * len(found)


def _last_weight(user_id: str, last: tuple[bytes, _Memo]) -> int:
    """The index's members as last read (a plan is made again from them)."""
    return len(user_id) + len(last[0]) + len(last[1][2])


def _kept_weight(memo: _Memo, kept: _Kept) -> int:
    """A kept answer's bytes, roughly: the Redis answers it was made of, counted twice
    (the rows made from them are as large)."""
    return len(memo[2]) + 2 * _bytes_in(kept.seen)


def _bytes_in(value: Any) -> int:
    if isinstance(value, bytes | str):
        return len(value)
    if isinstance(value, list | tuple):
        return 16 + sum(_bytes_in(item) for item in value)
    return 16
