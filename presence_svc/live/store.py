"""Tier 1, live presence: the operations on Redis behind the presence endpoints.

Each operation is one atomic Lua script on the artifact's hash slot; batch reads group
artifacts by partition and send one script call per partition in one pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any, Literal

import msgspec

from presence_svc.cursors import decode_scoped, encode_scoped
from presence_svc.errors import Conflict
from presence_svc.live.recent import RecentList
from presence_svc.live.where_now import WhereNowIndex
from presence_svc.redis.connection import Commands, RedisConnection, as_text
from presence_svc.redis.count_reads import CountReads, clock_ms, held
from presence_svc.redis.keys import Keyspace
from presence_svc.redis.page_checks import PageChecks
from presence_svc.redis.scripts import Engagement, Lifetimes, ScriptCall
from presence_svc.settings import Settings

__all__ = [
    "NO_DEADLINE",
    "PAGE_ORDER",
    "Counts",
    "PresencePage",
    "PresenceRow",
    "PresenceStore",
    "SessionMeta",
    "Status",
    "decode_state",
    "pack_session_id",
    "status_of",
]

CLOCK_MARGIN_MS = 200
"""How long before a kept page's first deadline its plain check stops trusting it: on a
Redis Cluster ``TIME`` is answered by another node than the artifact's, whose clock may be
behind the one the deadline was read on (the page script, on the artifact's node, then
tells)."""


Status = Literal["active", "away"]

PAGE_ORDER = "joined"
"""The presence list's order: when the user's presence began (see lua/live/presence.lua)."""


class Counts(msgspec.Struct, frozen=True, gc=False):
    """Online users and sessions of one artifact, and how many users are active or away.
    A Struct, not a dataclass: a batch read makes 1 000 of them, and it encodes as is
    (``{"online", "sessions", "active", "away"}``, the shape of ``schemas.OnlineCounts``)."""

    online: int
    sessions: int
    active: int
    away: int

    @classmethod
    def of(cls, online: int, sessions: int, active: int) -> Counts:
        # Lua integers in range, as the scripts almost always answer: no conversions or
        # clamping (0.55 -> 0.17 us, once per heartbeat).
        if (
            type(active) is int
            and type(online) is int
            and type(sessions) is int
            and 0 <= active <= online
        ):
            return cls(online, sessions, active, online - active)
        active = max(0, min(int(active), int(online)))
        return cls(int(online), int(sessions), active, int(online) - active)


@dataclass(frozen=True, slots=True)
class SessionMeta:
    """One online session of a user, without its id."""

    version_id: str | None
    state: dict[str, Any] | None
    last_seen_ms: int
    status: Status


@dataclass(frozen=True, slots=True)
class PresenceRow:
    user_id: str
    version_id: str | None
    state: dict[str, Any] | None
    last_seen_ms: int
    sessions: int
    status: Status = "active"
    metas: list[SessionMeta] | None = None


@dataclass(frozen=True, slots=True)
class PresencePage:
    counts: Counts
    rows: list[PresenceRow]
    next_cursor: str | None
    mark: str = ""
    """The artifact's page mark this page was built at ('' none: lib/pagemark.lua)."""
    built: int = 0
    """Redis's clock (ms) when it was built (``page_since``)."""
    holds_until: int = 0
    """Redis's clock (ms) before which it holds while ``mark`` does (``page_holds``): the
    first deadline of a session online when it was built (none: ``NO_DEADLINE``)."""


NO_DEADLINE = 2**62
"""``holds_until`` of a page built with no session online: no timeout can change it."""


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
        self._times = Lifetimes.of(settings)
        self._grace = int(settings.leave_grace_s * 1000)
        self.where_now = WhereNowIndex(redis, self.keys, settings, pack_session_id)
        self.recent = RecentList(redis, self.keys, settings)
        self._partitions: dict[str, int] = {}
        """Artifact id -> its partition, for batch reads (bounded like the key cache)."""
        self._count_reads = CountReads()
        self._page_checks = PageChecks()
        self._member_heads: dict[str, bytes] = {}
        """Artifact id -> ``,"<id>":``, its member's name in a batch answer (bounded too)."""
        self._plans: dict[tuple[str, ...], _BatchPlan] = {}

    def heartbeat_call(
        self,
        artifact_id: str,
        session_id: str,
        user_id: str,
        version_id: str | None,
        state_blob: bytes | None,
        away: bool = False,
        engaged: Engagement | None = None,
        hidden: bool = False,
    ) -> ScriptCall:
        """The heartbeat script call, for ``heartbeat`` and for pipelines of many; with
        ``engaged``, the one that credits engaged time first (lua/lib/engage.lua);
        ``hidden``: the user's presence is invisible (counted, not listed or announced)."""
        k, sid = self.keys.artifact(artifact_id), pack_session_id(session_id)
        version, state = version_id or "", state_blob or b""
        if engaged is not None:
            return self._scripts.heartbeat_engaged.call_engaged(
                k, self._times, sid, user_id, version, state, away, engaged, hidden
            )
        return self._scripts.heartbeat.call(
            k, self._times, sid, user_id, version, state, away, hidden
        )

    async def heartbeat(
        self,
        artifact_id: str,
        session_id: str,
        user_id: str,
        version_id: str | None,
        state_blob: bytes | None,
        away: bool = False,
        engaged: Engagement | None = None,
        hidden: bool = False,
    ) -> Counts:
        call = self.heartbeat_call(
            artifact_id, session_id, user_id, version_id, state_blob, away, engaged, hidden
        )
        result = await self.redis.run(call)
        counts = _counts(result)
        # where-now: a fourth element says the session (re)joined (lua/live/heartbeat.lua)
        joined = len(result) > 3
        if self.where_now.due(user_id, artifact_id, session_id, joined):
            await self.where_now.noted(user_id, artifact_id, session_id, joined)
        return counts

    async def leave(
        self,
        artifact_id: str,
        session_id: str,
        user_id: str,
        *,
        grace: bool = False,
        engaged: Engagement | None = None,
    ) -> Counts:
        k, sid = self.keys.artifact(artifact_id), pack_session_id(session_id)
        grace_ms = self._grace if grace else 0
        if engaged is not None:
            call = self._scripts.leave_engaged.call_engaged(
                k, self._times, sid, user_id, grace_ms, engaged
            )
        else:
            call = self._scripts.leave.call(k, self._times, sid, user_id, grace_ms)
        return _counts(await self.redis.run(call))

    async def online(self, artifact_ids: Sequence[str]) -> dict[str, Counts]:
        """Counts of many artifacts: one script call per partition, all in one pipeline."""
        by_tag = self._by_partition(artifact_ids)
        online = self._scripts.online
        calls = [online.call(tag, ids, json=False) for tag, ids in by_tag.items()]
        results = await self.redis.run_many(calls)
        out: dict[str, Counts] = {}
        for ids, result in zip(by_tag.values(), results, strict=True):
            if isinstance(result, Exception):
                raise result
            each = iter(result)  # online, sessions, active, online... (Lua integers)
            for artifact_id, users, sessions, active in zip(ids, each, each, each, strict=True):
                if 0 <= active <= users:  # as always: no clamping, no conversions
                    out[artifact_id] = Counts(users, sessions, active, users - active)
                else:
                    out[artifact_id] = Counts.of(users, sessions, active)
        return out

    async def online_one(self, artifact_id: str) -> Counts:
        """Counts of one artifact: its call joins the other calls of this loop turn in the
        shared pipeline (``run``), where ``online`` takes a pooled connection of its own
        for its batch: a round trip and redis-py's per-call machinery of its own, which
        made one count cost more than a heartbeat."""
        call = self._scripts.online.call(
            self.keys.artifact(artifact_id).tag, (artifact_id,), json=False
        )
        return Counts.of(*await self.redis.run(call))

    async def online_json(self, artifact_ids: Sequence[str]) -> bytes:
        """``online`` as the members of the answer's ``counts`` JSON object, comma-joined.
        The writers keep each artifact's counts in the answer's JSON (lib/counts.lua):
        one plain ``HMGET`` per partition reads them (``redis.count_reads``) and, where a
        partition's records all hold, they go out as read, their untils cut off, so no
        count passes through Python. A partition with a record that does not hold (a
        session timed out and is not settled yet, or no record) is asked the script
        (lua/live/online.lua), which works those out: exact either way. The ids must be
        valid ids (nothing to escape)."""
        plan = self._batch_plan(artifact_ids)
        replies = await self.redis.read_commands(plan.commands)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        now = clock_ms(replies[-1])
        parts: list[bytes] = []
        redo: list[tuple[str, Sequence[str]]] = []
        answered = plan.answered
        for n, (group, names, records) in enumerate(
            zip(plan.groups, plan.names, replies, strict=False)
        ):
            if not held(records, now):
                redo.append(group)
                continue
            last = answered[n]
            if last is not None and last[0] == records:
                # the same records as this batch's last answer: the same members (a
                # dashboard polling a quiet list), told by one comparison of the lists
                parts.append(last[1])
                continue
            part = b"".join([m + r[r.index(123) :] for m, r in zip(names, records, strict=True)])
            answered[n] = (records, part)
            parts.append(part)
        if redo:
            online = self._scripts.online
            calls = [online.call(tag, ids, json=True) for tag, ids in redo]
            for result in await self.redis.run_many(calls):
                if isinstance(result, Exception):
                    raise result
                parts += (b",", result if isinstance(result, bytes) else str(result).encode())
        return b"".join(parts)[1:]

    def _batch_plan(self, artifact_ids: Sequence[str]) -> _BatchPlan:
        """The batch's partitions, its commands packed and its members' names, kept by the
        ids asked for: a dashboard asks for the same list again and again."""
        key = tuple(artifact_ids)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        groups = list(self._by_partition(artifact_ids).items())
        heads = self._member_heads
        if len(heads) > Keyspace.CACHED_ARTIFACTS:
            heads.clear()
        names = [
            [heads.get(a) or heads.setdefault(a, b',"%s":' % a.encode()) for a in ids]
            for _, ids in groups
        ]
        plan = _BatchPlan(groups, self._count_reads.records(groups), names, [None] * len(groups))
        if len(self._plans) >= _PLANS_KEPT:
            self._plans.clear()
        self._plans[key] = plan
        return plan

    def _by_partition(self, artifact_ids: Sequence[str]) -> dict[str, list[str]]:
        """The distinct ids grouped by partition tag (a batch is one call per partition).
        The partitions of ids seen before come from a dict in one ``map``; the grouping is
        the one loop in Python, a bound ``append`` call per id."""
        cache = self._partitions
        ids = list(dict.fromkeys(artifact_ids))
        try:
            found = list(map(cache.__getitem__, ids))
        except KeyError:
            if len(cache) + len(ids) > Keyspace.CACHED_ARTIFACTS:
                cache.clear()
            partition_of = self.keys.partition_of
            found = [cache.setdefault(a, partition_of(a)) for a in ids]
        groups: list[list[str]] = [[] for _ in range(self.keys.count)]
        appends = [group.append for group in groups]
        for partition, artifact_id in zip(found, ids, strict=True):
            appends[partition](artifact_id)
        tags = self.keys.tags
        return {tags[n]: group for n, group in enumerate(groups) if group}

    async def page(
        self, artifact_id: str, limit: int, cursor: str | None, *, sessions: bool = False
    ) -> PresencePage:
        """One page of the artifact's online users in join order (``sessions``: with each
        user's sessions listed). A page may be short and still have a next cursor."""
        page = await self.page_unless(artifact_id, limit, cursor, "", sessions=sessions)
        assert page is not None  # no mark given: always a page
        return page

    async def page_unless(
        self,
        artifact_id: str,
        limit: int,
        cursor: str | None,
        known_mark: str,
        *,
        sessions: bool = False,
    ) -> PresencePage | None:
        """``page``, or None when ``known_mark`` (the ``mark`` of a page the caller keeps)
        says that page still holds: nothing was written on the artifact since it was built
        and none of its sessions timed out (lastSeen times may have moved on since)."""
        found = await self._page_call(artifact_id, limit, cursor, known_mark, None, sessions)
        return found if isinstance(found, PresencePage) else None

    async def page_holds(self, artifact_id: str, kept: PresencePage) -> bool | None:
        """Whether ``kept`` (a page built before) still holds, lastSeen times aside, told
        from the artifact's page mark and Redis's clock (``redis.page_checks``: two plain
        commands, no script): True when the mark is the one it was built at and the clock
        is before its ``holds_until``; False when the mark moved (it does not hold); None
        past that time (a session it counts may have timed out: ``page_unless`` tells)."""
        if not kept.mark:
            return False
        commands = self._page_checks.of(self.keys.artifact(artifact_id))
        answers = await self.redis.read_in_turn(commands)
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        mark, clock = answers
        if mark is None or as_text(mark) != kept.mark:
            return False
        return True if clock_ms(clock) + CLOCK_MARGIN_MS < kept.holds_until else None

    async def page_since(
        self,
        artifact_id: str,
        limit: int,
        cursor: str | None,
        kept: PresencePage,
        *,
        sessions: bool = False,
    ) -> PresencePage | bool:
        """``page_unless`` for a page the caller keeps: True when it holds and no session
        beat since it was built either (its lastSeen times hold too), False when it holds
        lastSeen times aside, else a new page."""
        found = await self._page_call(artifact_id, limit, cursor, kept.mark, kept.built, sessions)
        return found if isinstance(found, PresencePage) else found == b"="

    async def _page_call(
        self,
        artifact_id: str,
        limit: int,
        cursor: str | None,
        known_mark: str,
        built: int | None,
        sessions: bool,
    ) -> PresencePage | bytes:
        after = decode_scoped(cursor, PAGE_ORDER, artifact_id) if cursor else None
        times = self._times
        call = self._scripts.presence.call(
            self.keys.artifact(artifact_id), times, limit, after, sessions, known_mark, built
        )
        raw = await self.redis.run(call)
        if len(raw) <= 1:
            return bytes(raw)  # '' or '=': the kept page holds
        online, count, active, page, next_after, infos, mark, built_at, until = _PAGE.decode(raw)
        rows = _rows(page, infos, sessions) if isinstance(page, list) else []
        next_cursor = None
        if next_after >= 0:
            next_cursor = encode_scoped(PAGE_ORDER, artifact_id, int(next_after))
        counts = Counts.of(online, count, active)
        until = NO_DEADLINE if until < 0 else until
        return PresencePage(counts, rows, next_cursor, mark, built_at, until)

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
                # each artifact in bounded steps (a scan of its sessions), batch by batch
                pending = {a: "0" for a in artifact_ids[start : start + 500]}
                while pending:
                    ids = list(pending)
                    calls = [
                        erase.call(self.keys.artifact(a), self._times, user_id, pending[a])
                        for a in ids
                    ]
                    for a, result in zip(ids, await self.redis.run_many(calls), strict=True):
                        if isinstance(result, Exception):
                            raise result
                        removed += int(result[0])
                        cursor = as_text(result[1])
                        if cursor == "0":
                            del pending[a]
                        else:
                            pending[a] = cursor
        await self.where_now.erase(user_id)
        return removed


def _counts(result: list[int]) -> Counts:
    if result[0] == -1:
        raise Conflict("this sessionId belongs to another user; use a session id of your own")
    return Counts.of(result[0], result[1], result[2])


def status_of(away: object) -> Status:
    """``away`` as the Lua scripts give it (1 or 'away'; 0 or 'active')."""
    return "away" if away in (1, "away", b"away") else "active"


_PLANS_KEPT = 64
"""Batches a process keeps planned (some 40 KB each for 1 000 ids, twice that with their
last answer's records and members); past it they start over."""


@dataclass(frozen=True, slots=True)
class _BatchPlan:
    groups: list[tuple[str, list[str]]]
    """(partition tag, its artifact ids), in the answer's order."""
    commands: Commands
    names: list[list[bytes]]
    """Per group, each artifact's ``,"<id>":``."""
    answered: list[tuple[list[Any], bytes] | None]
    """Per group, the records of its last answer from the records alone, and the members
    they made: the members are a function of the records, so the same records give them
    again without a slice per artifact."""


class _WireInfo(msgspec.Struct, array_like=True, gc=False):
    """A session's info as stored (lib/presence.lua), handed on by the page script."""

    user_id: str
    version_id: str
    state: str
    flags: int = 0


_PAGE = msgspec.msgpack.Decoder(
    tuple[int, int, int, list[float] | dict[str, Any], float, list[_WireInfo], str, int, int]
)
"""The page script's answer: counts, the rows flat (an empty Lua table may pack as a
map), the next join number, the rows' session infos, the page mark, Redis's clock, the
first online deadline (-1: none)."""


def _rows(flat: list[float], infos: list[_WireInfo], listing: bool) -> list[PresenceRow]:
    """The rows of ``lua/live/presence.lua``, flat: ``lastSeen, sessions, away, join``
    (and with ``listing`` the number of sessions listed, then ``lastSeen, away`` of each),
    with their infos in order: the row's most recent session's, then each listed one's.
    Decoded by msgspec in one pass, then read here in one loop (a table per row and the
    infos unpacked and packed again cost Redis ~5 us a row)."""
    out = []
    at = i = 0
    end = len(flat)
    while i < end:
        info = infos[at]
        at += 1
        listed: list[SessionMeta] | None = None
        step = 4
        if listing:
            n = int(flat[i + 4])
            listed = []
            for j in range(i + 5, i + 5 + 2 * n, 2):
                meta = infos[at]
                at += 1
                listed.append(
                    SessionMeta(
                        meta.version_id or None,
                        decode_state(meta.state),
                        int(flat[j]),
                        "away" if flat[j + 1] == 1 else "active",
                    )
                )
            step = 5 + 2 * n
        out.append(
            PresenceRow(
                info.user_id,
                info.version_id or None,
                decode_state(info.state),
                int(flat[i]),
                int(flat[i + 1]),
                "away" if flat[i + 2] == 1 else "active",
                listed,
            )
        )
        i += step
    return out
