"""The Lua scripts in ``lua/``, one typed object each, read once and called by SHA.

Each object owns its script's KEYS and ARGV order: callers pass named values and get a
``ScriptCall`` back, which a ``RedisConnection`` runs. No module outside this package knows
how a call is laid out or packed. The presence writers share the opening of
``lua/lib/writer.lua`` (artifact, channel, timeouts, retention), which is the same for every
call on an artifact: ``PresenceWriter`` packs it once per artifact and keeps it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import ClassVar, NamedTuple, TypeAlias

import msgspec

from presence_svc.redis.keys import ArtifactKeys, Keyspace
from presence_svc.redis.resp import (
    Command,
    Commands,
    bulk,
    evalsha_head,
    pack_bulks,
    pack_evalsha,
)
from presence_svc.settings import Settings

__all__ = [
    "EngageFoldScript",
    "EngageRules",
    "Engagement",
    "HeartbeatScript",
    "LeaveScript",
    "Lifetimes",
    "Script",
    "ScriptArg",
    "ScriptCall",
    "Scripts",
    "SeenCheckScript",
    "SetLatestScript",
    "SettleTokensScript",
    "TimelineDoneScript",
    "TimelineDueScript",
    "TimelineReadScript",
    "lua_source",
]

ScriptArg: TypeAlias = str | bytes | int | float

_INCLUDE = re.compile(r"^--! include (\S+)\s*$", re.MULTILINE)
_CACHED_HEADS = 16_384
"""Writer heads kept per script (each ~250-660 bytes: at most ~10 MB); past it the cache
starts over, and a head missing costs its packing once more."""


def _lua_dir() -> Traversable:
    packaged = resources.files("presence_svc").joinpath("lua")
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "lua"  # a source checkout


def lua_source(name: str) -> str:
    """The script ``name`` (``live/heartbeat``) with every ``--! include`` line replaced by
    the named file (paths from ``lua/``), each file included once."""
    root = _lua_dir()
    seen: set[str] = set()

    def expand(path: str) -> str:
        seen.add(path)
        text = root.joinpath(path).read_text(encoding="utf-8")
        return _INCLUDE.sub(lambda m: "" if m[1] in seen else expand(m[1]), text)

    return expand(f"{name}.lua")


class ScriptCall:
    """One call of a script: its keys and arguments, and the call packed in RESP.

    ``head``, when given, is ``EVALSHA``, the keys and the ``shared`` arguments packed
    already (cached by the script object: the same for every call on an artifact), so a
    call packs only its ``own`` arguments."""

    __slots__ = ("head", "keys", "own", "script", "shared", "tail")

    def __init__(
        self,
        script: Script,
        keys: Sequence[str],
        shared: tuple[ScriptArg, ...],
        own: tuple[ScriptArg, ...] = (),
        head: bytes | None = None,
    ) -> None:
        self.script = script
        self.keys = keys
        self.shared = shared
        self.own = own
        self.head = head
        self.tail: bytes | None = None
        """``own`` packed, when the script object packs it itself."""

    @property
    def args(self) -> tuple[ScriptArg, ...]:
        return self.shared + self.own

    def resp(self) -> bytes:
        if self.head is None:
            return pack_evalsha(self.script.sha, self.keys, self.args)
        return self.head + (self.tail if self.tail is not None else pack_bulks(self.own))

    def __repr__(self) -> str:
        return f"<ScriptCall {self.script.name} keys={list(self.keys)!r}>"


class Script:
    """A script file (``PATH`` under ``lua/``, without ``.lua``): its name, text and SHA."""

    PATH: ClassVar[str]

    def __init__(self) -> None:
        path = self.PATH
        self.name = path.rpartition("/")[2]
        """The file's stem: what metrics and logs call the script."""
        self.source = lua_source(path).encode()
        self.sha = hashlib.sha1(self.source).hexdigest()

    def __repr__(self) -> str:
        return f"<Script {self.name} {self.sha[:8]}>"


_PACKED_COUNTS = 1024
_COUNT_BULKS = tuple(bulk(n) for n in range(_PACKED_COUNTS))
"""Small counts as RESP bulk strings, packed once (a settlement's counts)."""
_ONE_BULK = b"$%d\r\n%b\r\n"
_ENGAGED_TAIL = b"$%d\r\n%b\r\n" * 6 + b"%b$%d\r\n%b\r\n"
"""An engaged heartbeat's own arguments: the heartbeat's six, engage()'s fixed three (packed
already), the engaged ms (the session, user and version engage() reads from the
heartbeat's own)."""
_SIX_BULKS = b"$%d\r\n%b\r\n" * 6
_Fixed: TypeAlias = "tuple[int, int, bytes]"
"""engage()'s first three arguments: the slack, the ceiling, the rules only a fold reads."""
_Shared: TypeAlias = "tuple[tuple[str, ...], tuple[ScriptArg, ...], bytes]"
"""What every call of a writer on one artifact shares: its keys, the writer arguments, and
both packed behind ``EVALSHA``."""


class Lifetimes(NamedTuple):
    """How long sessions (and their traces) live, as every presence writer is told."""

    online_ms: int
    """An active session goes offline this long after its last heartbeat."""
    retention_ms: int
    """A session offline this long is deleted."""
    away_ms: int
    """An away session goes offline this long after its last heartbeat."""
    recent_ms: int = 86_400_000
    """A user whose last session went stays in the recently-here list this long."""
    recent_max: int = 1000
    """Users one artifact's recently-here list keeps at most."""
    timeline_ms: int = 0
    """How long the artifact's per-minute timeline keeps a minute (0: no timeline)."""

    @classmethod
    def of(cls, settings: Settings) -> Lifetimes:
        return cls(
            settings.online_timeout_ms,
            settings.retention_ms,
            settings.away_timeout_ms,
            settings.recent_ms,
            settings.recent_max,
            settings.timeline_ms,
        )


class PresenceWriter(Script):
    """A script opening with ``lib/writer.lua``: KEYS Z, I, U, D, R, RD, OB, TL, TI of one
    artifact, ARGV its id, channel and ``Lifetimes`` (online timeout, retention, away
    timeout, recently-here keep time and cap, timeline keep time), then the script's own
    arguments."""

    OWN_ARGS: ClassVar[int]
    """How many arguments of its own the script takes after the writer's."""

    def __init__(self) -> None:
        super().__init__()
        self._shared_by_artifact: dict[str, _Shared] = {}

    def _call(self, k: ArtifactKeys, times: Lifetimes, own: tuple[ScriptArg, ...]) -> ScriptCall:
        shared = self._shared_by_artifact.get(k.sessions)
        # Every store of a process has the same timeouts; another's (a test) replaces it.
        if shared is None or shared[1][2:] != times:
            if len(self._shared_by_artifact) >= _CACHED_HEADS:
                self._shared_by_artifact.clear()
            shared = self._shared(k, times)
            self._shared_by_artifact[k.sessions] = shared
        keys, args, head = shared
        return ScriptCall(self, keys, args, own, head)

    def _shared(self, k: ArtifactKeys, times: Lifetimes) -> _Shared:
        keys: tuple[str, ...] = (k.sessions, k.info, k.users, k.due, k.recent, k.recent_due)
        keys += (k.outbox, k.timeline, k.timeline_index)  # KEYS[9]: lib/timeline.lua
        keys += (k.counts,)  # KEYS[10]: lib/counts.lua
        args = (k.artifact_id, k.channel, *times)
        head = evalsha_head(self.sha, len(keys), len(args) + self.OWN_ARGS)
        return keys, args, head + pack_bulks((*keys, *args))


class HeartbeatScript(PresenceWriter):
    PATH = "live/heartbeat"
    OWN_ARGS = 6

    def call(
        self,
        k: ArtifactKeys,
        times: Lifetimes,
        session: bytes,
        user_id: str,
        version_id: str,
        state: bytes,
        away: bool = False,
        hidden: bool = False,
    ) -> ScriptCall:
        """``version_id`` and ``state`` empty keep what the session has; ``hidden``: the
        user's presence is invisible (counted, never listed or announced)."""
        user, version = user_id.encode(), version_id.encode()
        status = b"1" if away else b""
        invisible = b"1" if hidden else b""
        call = self._call(k, times, (session, user, version, state, status, invisible))
        # The hot path: the six arguments packed in one formatting pass.
        call.tail = _SIX_BULKS % (
            len(session),
            session,
            len(user),
            user,
            len(version),
            version,
            len(state),
            state,
            len(status),
            status,
            len(invisible),
            invisible,
        )
        return call


class LeaveScript(PresenceWriter):
    PATH = "live/leave"
    OWN_ARGS = 3

    def call(
        self, k: ArtifactKeys, times: Lifetimes, session: bytes, user_id: str, grace_ms: int
    ) -> ScriptCall:
        return self._call(k, times, (session, user_id, grace_ms))


class EngageRules(NamedTuple):
    """What ``lib/engage.lua`` is told besides the report (``stats.engagement``)."""

    slack_ms: int
    ceiling_ms: int
    read_after_ms: int
    floors: str
    """The histogram's bucket floors (s), comma-separated."""
    reports_ms: int
    """Lifetime of the accumulators hash an older version kept per artifact; unused by the
    scripts since the accumulators moved into the session records (its place in the
    arguments kept)."""
    day_ms: int
    """Lifetime of a day's totals hash."""
    day: str
    """The UTC day, ``YYYY-MM-DD``."""
    fold_ms: int = 0
    """A session's accumulated time is credited at most this often (0: every report)."""


class Engagement(NamedTuple):
    """Engaged time a heartbeat or a leave carries, and the rules it is credited by."""

    rules: EngageRules
    engaged_ms: int


class _Engaged(PresenceWriter):
    """A writer preceded by ``lib/engage.lua``'s ``engage()``: the writer's keys (the
    session's accumulator is in its record, the writer's ``KEYS[2]``; the partition's
    dirty and folds zsets, which only a fold writes, engage() builds from the views
    prefix); its arguments plus engage()'s 4 (the rules packed once per artifact and day:
    the slack, the ceiling, and what only a fold reads as one msgpack argument; then the
    engaged ms). The session, user and version engage() reads from the writer's own
    (ARGV[9..11]): not sent twice."""

    ENGAGE_ARGS = 4

    def __init__(self) -> None:
        super().__init__()
        self._rules: dict[str, tuple[EngageRules, _Fixed, bytes]] = {}

    def _engaged(self, call: ScriptCall, k: ArtifactKeys, engaged: Engagement) -> ScriptCall:
        """``call`` of the writer with engage()'s arguments appended."""
        cached = self._fixed(k, engaged.rules)
        ms = b"%d" % engaged.engaged_ms
        tail = call.tail if call.tail is not None else pack_bulks(call.own)
        call.tail = tail + cached[1] + _ONE_BULK % (len(ms), ms)
        call.own = (*call.own, *cached[0], engaged.engaged_ms)
        return call

    def _fixed(self, k: ArtifactKeys, rules: EngageRules) -> tuple[_Fixed, bytes]:
        """engage()'s first three arguments for this artifact (the slack, the ceiling, and
        what only a fold reads as one msgpack argument), and them packed."""
        cached = self._rules.get(k.artifact_id)
        if cached is None or (cached[0] is not rules and cached[0] != rules):
            cached = self._cache_rules(k, rules)
        return cached[1], cached[2]

    def _cache_rules(
        self, k: ArtifactKeys, rules: EngageRules
    ) -> tuple[EngageRules, _Fixed, bytes]:
        if len(self._rules) >= _CACHED_HEADS:
            self._rules.clear()
        fold = (*rules[2:4], Keyspace.views_prefix(k.tag), *rules[4:])
        fixed = (rules.slack_ms, rules.ceiling_ms, msgspec.msgpack.encode(fold))
        cached = self._rules[k.artifact_id] = (rules, fixed, pack_bulks(fixed))
        return cached


class HeartbeatEngagedScript(_Engaged, HeartbeatScript):
    PATH = "stats/heartbeat_engaged"
    OWN_ARGS = HeartbeatScript.OWN_ARGS + _Engaged.ENGAGE_ARGS

    def call_engaged(
        self,
        k: ArtifactKeys,
        times: Lifetimes,
        session: bytes,
        user_id: str,
        version_id: str,
        state: bytes,
        away: bool,
        engaged: Engagement,
        hidden: bool = False,
    ) -> ScriptCall:
        """The hot path: the heartbeat's six arguments and engage()'s four packed in one
        formatting pass (engage()'s fixed three packed once per artifact and day)."""
        rules, engaged_ms = engaged
        cached = self._rules.get(k.artifact_id)
        if cached is None or (cached[0] is not rules and cached[0] != rules):
            cached = self._cache_rules(k, rules)
        slack, ceiling, fold = cached[1]
        user, version = user_id.encode(), version_id.encode()
        status = b"1" if away else b""
        invisible = b"1" if hidden else b""
        ms = b"%d" % engaged_ms
        own = (session, user, version, state, status, invisible, slack, ceiling, fold)
        call = self._call(k, times, (*own, ms))
        call.tail = _ENGAGED_TAIL % (
            len(session), session, len(user), user, len(version), version, len(state), state,
            len(status), status, len(invisible), invisible, cached[2], len(ms), ms,
        )  # fmt: skip
        return call


class LeaveEngagedScript(_Engaged, LeaveScript):
    PATH = "stats/leave_engaged"
    OWN_ARGS = LeaveScript.OWN_ARGS + _Engaged.ENGAGE_ARGS

    def call_engaged(
        self,
        k: ArtifactKeys,
        times: Lifetimes,
        session: bytes,
        user_id: str,
        grace_ms: int,
        engaged: Engagement,
    ) -> ScriptCall:
        call = self.call(k, times, session, user_id, grace_ms)
        return self._engaged(call, k, engaged)


class EngageFoldScript(Script):
    PATH = "stats/engage_fold"

    def call(self, tag: str, rules: EngageRules, limit: int) -> ScriptCall:
        """Fold up to ``limit`` due accumulators of partition ``tag``."""
        keys = (Keyspace.engage_folds(tag), Keyspace.engage_dirty(tag), Keyspace.outbox(tag))
        args = (
            rules.read_after_ms,
            rules.floors,
            Keyspace.views_prefix(tag),
            Keyspace.presence_prefix(tag),
            rules.day_ms,
            rules.day,
            rules.fold_ms,
            limit,
            rules.reports_ms,
        )
        return ScriptCall(self, keys, args)


class SweepScript(PresenceWriter):
    PATH = "live/sweep"
    OWN_ARGS = 0

    def call(self, k: ArtifactKeys, times: Lifetimes) -> ScriptCall:
        return self._call(k, times, ())


class EraseUserScript(PresenceWriter):
    PATH = "live/erase_user"
    OWN_ARGS = 2

    def call(self, k: ArtifactKeys, times: Lifetimes, user_id: str, cursor: str) -> ScriptCall:
        return self._call(k, times, (user_id, cursor))


class OnlineScript(Script):
    PATH = "live/online"

    def __init__(self) -> None:
        super().__init__()
        self._heads: dict[tuple[str, bool], bytes] = {}
        """(tag, json) -> the call packed up to its ids: a batch makes 64 calls."""

    def call(self, tag: str, artifact_ids: Sequence[str], *, json: bool) -> ScriptCall:
        """Counts of ``artifact_ids`` (valid ids), all of partition ``tag``, in one call:
        with ``json`` one slice of the answer's JSON object, else three numbers each. The
        ids travel as one argument: one join here, no RESP packing per id."""
        keys = (Keyspace.counts(tag),)
        args = (Keyspace.presence_prefix(tag), "j" if json else "n")
        head = self._heads.get((tag, json))
        if head is None:
            head = self._heads[tag, json] = evalsha_head(self.sha, 1, 3) + pack_bulks(
                (*keys, *args)
            )
        joined = "\n".join(artifact_ids).encode()
        call = ScriptCall(self, keys, args, (joined,), head)
        call.tail = b"$%d\r\n%b\r\n" % (len(joined), joined)
        return call


class PresencePageScript(Script):
    PATH = "live/presence"

    def __init__(self) -> None:
        super().__init__()
        self._heads: dict[tuple[str, int, int], bytes] = {}
        """(artifact, timeouts) -> the call packed up to its own arguments: a busy room is
        read by many, each read a call."""

    def call(
        self,
        k: ArtifactKeys,
        times: Lifetimes,
        limit: int,
        after: int | None,
        listing: bool,
        known_mark: str = "",
        built: int | None = None,
    ) -> ScriptCall:
        """A page of ``limit`` users who came after join number ``after``; an empty answer
        instead if ``known_mark`` (a page mark, lib/pagemark.lua) still holds, ``=`` if
        besides no session beat since ``built`` (the kept page's Redis time)."""
        keys = (k.sessions, k.info, k.users)
        shared = (times.online_ms, times.away_ms)
        own = (
            limit,
            "" if after is None else after,
            "1" if listing else "",
            known_mark,
            "" if built is None else built,
        )
        cached = (k.sessions, *shared)
        head = self._heads.get(cached)
        if head is None:
            if len(self._heads) >= _CACHED_HEADS:
                self._heads.clear()
            head = self._heads[cached] = evalsha_head(self.sha, 3, 7) + pack_bulks((*keys, *shared))
        return ScriptCall(self, keys, shared, own, head)


_SID_BULK = b"$9\r\n%b\r\n"
"""A packed session id (``live.store.pack_session_id``: ``#`` + 8 bytes) as a bulk string."""


class SessionChecks:
    """The plain read commands that check a user's candidate sessions on artifacts (see
    ``live/where_now.py``): per artifact ``ZMSCORE`` of the sessions, ``HMGET`` of their
    info and (unless it is likely online) ``ZSCORE`` of the user in the recently-here
    list; as tuples (a Cluster routes those) and packed in RESP (a single server's pipe
    sends those), the artifacts' keys packed once and kept: a check packs some 100-150
    commands."""

    def __init__(self) -> None:
        self._heads: dict[str, tuple[bytes, bytes, bytes]] = {}

    def _heads_of(self, k: ArtifactKeys) -> tuple[bytes, bytes, bytes]:
        heads = self._heads.get(k.sessions)
        if heads is None:
            if len(self._heads) >= _CACHED_HEADS:
                self._heads.clear()
            heads = self._heads[k.sessions] = (
                b"$7\r\nZMSCORE\r\n" + bulk(k.sessions),
                b"$5\r\nHMGET\r\n" + bulk(k.info),
                b"$6\r\nZSCORE\r\n" + bulk(k.recent),
            )
        return heads

    def build(
        self, user_id: str, artifacts: Sequence[tuple[ArtifactKeys, Sequence[bytes], bool]]
    ) -> Commands:
        """The commands for ``artifacts``, each with its packed session ids (which MUST be
        9 bytes each: they are packed as such) and whether to ask its recently-here list
        too: 2 or 3 commands apiece."""
        parts: list[bytes] = []
        user = bulk(user_id)
        count = 0
        for k, sids, with_recent in artifacts:
            zmscore, hmget, zscore = self._heads_of(k)
            packed_sids = _SID_BULK * len(sids) % tuple(sids)
            head = b"*%d\r\n" % (2 + len(sids))
            parts += (head, zmscore, packed_sids, head, hmget, packed_sids)
            count += 2
            if with_recent:
                parts += (b"*3\r\n", zscore, user)
                count += 1

        def tuples() -> list[Command]:
            out: list[Command] = []
            for k, sids, with_recent in artifacts:
                out += (("ZMSCORE", k.sessions, *sids), ("HMGET", k.info, *sids))
                if with_recent:
                    out.append(("ZSCORE", k.recent, user_id))
            return out

        return Commands(b"".join(parts), count, tuples)

    def deadlines(self, artifacts: Sequence[tuple[ArtifactKeys, Sequence[bytes]]]) -> Commands:
        """Only the ``ZMSCORE`` of each artifact's candidate sessions (9 bytes each): one
        command apiece, what a read needs to tell that nothing moved since an answer it
        kept (see ``live/where_now.py``)."""
        parts: list[bytes] = []
        for k, sids in artifacts:
            parts += (
                b"*%d\r\n" % (2 + len(sids)),
                self._heads_of(k)[0],
                _SID_BULK * len(sids) % tuple(sids),
            )

        def tuples() -> list[Command]:
            return [("ZMSCORE", k.sessions, *sids) for k, sids in artifacts]

        return Commands(b"".join(parts), len(artifacts), tuples)

    @staticmethod
    def recent(user_id: str, artifacts: Sequence[ArtifactKeys]) -> Commands:
        """``ZSCORE`` of the user in each artifact's recently-here list (asked afterwards of
        the artifacts likely online that were not)."""
        return Commands.of([("ZSCORE", k.recent, user_id) for k in artifacts])


class WhereNowAddScript(Script):
    PATH = "live/where_now_add"

    def call(
        self, index: str, generation: str, member: str, lifetime_ms: int, keep: int, joined: bool
    ) -> ScriptCall:
        return ScriptCall(
            self, (index, generation), (member, lifetime_ms, keep, "1" if joined else "")
        )


class WhereNowReadScript(Script):
    PATH = "live/where_now_read"

    def __init__(self) -> None:
        super().__init__()
        self._heads: dict[tuple[str, int, int], bytes] = {}
        """Per index (and read's shape), the call packed up to the known generation: the
        same bytes every poll."""

    def call(
        self, index: str, generation: str, most: int, fresh_ms: int, known: bytes
    ) -> ScriptCall:
        """The newest ``most`` entries, how many were written in the last ``fresh_ms``
        and the index's generation; only the time if the generation is still ``known``."""
        keys, shared = (index, generation), (most, fresh_ms)
        cached = (index, most, fresh_ms)
        head = self._heads.get(cached)
        if head is None:
            if len(self._heads) >= _CACHED_HEADS:
                self._heads.clear()
            head = evalsha_head(self.sha, 2, 3) + pack_bulks((*keys, *shared))
            self._heads[cached] = head
        return ScriptCall(self, keys, shared, (known,), head)


class WhereNowPruneScript(Script):
    PATH = "live/where_now_prune"

    def call(
        self, index: str, generation: str, read_at_ms: int, members: Sequence[str | bytes]
    ) -> ScriptCall:
        """Drop each of ``members`` not rewritten since the read at ``read_at_ms``."""
        return ScriptCall(self, (index, generation), (read_at_ms, *members))


class RecentPageScript(Script):
    PATH = "live/recent_page"

    def call(
        self, k: ArtifactKeys, recent_ms: int, limit: int, after: tuple[int, str] | None
    ) -> ScriptCall:
        score, user = after if after else ("", "")
        return ScriptCall(self, (k.recent,), (recent_ms, limit, score, user))


class WorkersScript(Script):
    PATH = "live/workers"

    def call(self, key: str, worker_id: str, lease_ms: int, stay: bool) -> ScriptCall:
        return ScriptCall(self, (key,), (worker_id, lease_ms, "1" if stay else "0"))


_SEVEN_BULKS = b"$%d\r\n%b\r\n" * 7
_Version: TypeAlias = "tuple[tuple[str, ...], bytes, str, bytes, bytes]"
"""What every view of one version shares: KEYS[2..10], them packed, the debounce key's
prefix, and the artifact and version ids encoded."""


def _view_args(
    artifact_id: str,
    version_id: str,
    user_id: str,
    session_id: str | None,
    view_id: str,
    debounce_ms: int,
    hidden: bool,
) -> tuple[ScriptArg, ...]:
    """lib/view_record.lua's ARGV[1..7]."""
    session = session_id or ""
    return (artifact_id, version_id, user_id, session, view_id, debounce_ms, "1" if hidden else "")


def _view_tail(
    artifact: bytes,
    version: bytes,
    user_id: str,
    session_id: str | None,
    view_id: str,
    debounce_ms: int,
    hidden: bool,
) -> bytes:
    """``_view_args`` packed (the ids encoded already where a cache holds them): the hot
    path's seven arguments in one formatting pass."""
    user, session, view = user_id.encode(), (session_id or "").encode(), view_id.encode()
    window = str(debounce_ms).encode()
    invisible = b"1" if hidden else b""
    return _SEVEN_BULKS % (
        len(artifact),
        artifact,
        len(version),
        version,
        len(user),
        user,
        len(session),
        session,
        len(view),
        view,
        len(window),
        window,
        len(invisible),
        invisible,
    )


class RecordViewScript(Script):
    PATH = "stats/record_view"

    def __init__(self) -> None:
        super().__init__()
        self._version_keys: dict[tuple[int, str, str], _Version] = {}
        self._head = evalsha_head(self.sha, 10, 7)

    def call(
        self,
        keys: Keyspace,
        artifact_id: str,
        version_id: str,
        user_id: str,
        session_id: str | None,
        view_id: str,
        debounce_ms: int,
        hidden: bool = False,
    ) -> ScriptCall:
        """``hidden``: the user's view history is hidden (counted, not listed to others)."""
        shared, packed, prefix, artifact, version = self._shared_keys(keys, artifact_id, version_id)
        debounce = prefix + user_id
        args = _view_args(
            artifact_id, version_id, user_id, session_id, view_id, debounce_ms, hidden
        )
        head = self._head + bulk(debounce) + packed
        call = ScriptCall(self, (debounce, *shared), (), args, head)
        call.tail = _view_tail(artifact, version, user_id, session_id, view_id, debounce_ms, hidden)
        return call

    def _shared_keys(self, keys: Keyspace, artifact_id: str, version_id: str) -> _Version:
        """KEYS[2..10], the same for every view of one version: built and packed once
        (a view spent more on naming and packing its keys than on the rest of its call),
        with the debounce key's prefix and the ids packed as arguments."""
        # by partition count too: the key names depend on it (a test's keyspace may differ)
        cached = (keys.count, artifact_id, version_id)
        found = self._version_keys.get(cached)
        if found is not None:
            return found
        tag = keys.tag_of(artifact_id)
        shared = (
            keys.artifact_stats(artifact_id),
            keys.artifact_viewers(artifact_id),
            keys.artifact_versions(artifact_id),
            keys.version_stats(artifact_id, version_id),
            keys.version_viewers(artifact_id, version_id),
            keys.version_viewers_by_time(artifact_id, version_id),
            keys.views_stream(tag),
            keys.outbox(tag),  # webhooks: version.seen
            keys.artifact_latest(artifact_id),
        )
        if len(self._version_keys) >= _CACHED_HEADS:
            self._version_keys.clear()
        found = self._version_keys[cached] = (
            shared,
            pack_bulks(shared),
            keys.view_debounce_prefix(artifact_id, version_id),
            artifact_id.encode(),
            version_id.encode(),
        )
        return found


class EngageDoneScript(Script):
    PATH = "stats/engage_done"

    def call(self, dirty: str, read: Sequence[tuple[str, int]]) -> ScriptCall:
        """Take each of ``read`` (member, score when read) out of the dirty zset unless it
        changed since."""
        return ScriptCall(self, (dirty,), tuple(x for pair in read for x in pair))


class ViewersScript(Script):
    PATH = "stats/viewers"

    def call(
        self,
        keys: Keyspace,
        artifact_id: str,
        version_id: str,
        limit: int,
        after: tuple[int, str] | None,
        own_user_id: str = "",
    ) -> ScriptCall:
        """``own_user_id``: the caller, who sees their own row even when it is hidden."""
        script_keys = (
            keys.version_viewers_by_time(artifact_id, version_id),
            keys.version_viewers(artifact_id, version_id),
            keys.version_stats(artifact_id, version_id),
        )
        seen, user = after if after else ("", "")
        return ScriptCall(self, script_keys, (limit, seen, user, own_user_id))


class HideViewerScript(Script):
    PATH = "stats/hide_viewer"

    def call(
        self, keys: Keyspace, artifact_id: str, version_id: str, user_id: str, hide: bool
    ) -> ScriptCall:
        script_keys = (
            keys.version_viewers(artifact_id, version_id),
            keys.version_viewers_by_time(artifact_id, version_id),
        )
        return ScriptCall(self, script_keys, (user_id, "1" if hide else ""))


class PrivacySetScript(Script):
    PATH = "users/privacy_set"

    def call(self, key: str, user_id: str, flags: int) -> ScriptCall:
        return ScriptCall(self, (key,), (user_id, flags))


class SetLatestScript(Script):
    PATH = "stats/set_latest"

    def call(self, keys: Keyspace, artifact_id: str, version_id: str) -> ScriptCall:
        return ScriptCall(self, (keys.artifact_latest(artifact_id),), (version_id,))


class SeenCheckScript(Script):
    PATH = "stats/seen_check"

    def call(
        self,
        keys: Keyspace,
        artifact_id: str,
        version_id: str | None,
        read_after_ms: int,
        user_ids: bytes,
        *,
        json: bool,
    ) -> ScriptCall:
        """Who of ``user_ids`` (valid ids joined by newlines: one argument, no RESP packing
        per id) has seen and read ``version_id`` (``None``: the artifact's latest), each
        list answered as a whole JSON (``json``) or msgpack array."""
        # the viewers key of the version '' is the prefix the script appends a version to
        prefix = keys.version_viewers(artifact_id, "")
        args = (prefix, version_id or "", read_after_ms, "j" if json else "m", user_ids)
        return ScriptCall(self, (keys.artifact_latest(artifact_id),), args)


class SettleTokensScript(Script):
    PATH = "limits/settle"

    def __init__(self) -> None:
        super().__init__()
        self._rules: dict[tuple[float, int], bytes] = {}

    def call(
        self, buckets: Sequence[str], interval_ms: float, burst: int, counts: Sequence[int | bytes]
    ) -> ScriptCall:
        """Charge ``buckets`` (of one route class, on one slot) with ``counts``."""
        return ScriptCall(self, buckets, (repr(interval_ms), burst, *counts))

    @staticmethod
    def packed_key(bucket: str) -> bytes:
        """A bucket's key packed for ``call_packed`` (a caller packs each key once)."""
        return bulk(bucket)

    def call_packed(
        self,
        buckets: Sequence[str],
        packed_buckets: bytes,
        interval_ms: float,
        burst: int,
        counts: Sequence[int],
    ) -> ScriptCall:
        """``call``, joined from parts packed once: the buckets' keys (``packed_key`` of
        each, joined), the class's rules, the counts (a settlement sends one call per slot
        and class, ten times a second: the packing was most of its cost)."""
        rules = self._rules.get((interval_ms, burst))
        if rules is None:
            rules = self._rules[interval_ms, burst] = pack_bulks((repr(interval_ms), burst))
        n = len(buckets)
        head = evalsha_head(self.sha, n, n + 2) + packed_buckets + rules
        head += b"".join([_COUNT_BULKS[c] if c < _PACKED_COUNTS else bulk(c) for c in counts])
        call = ScriptCall(self, buckets, (repr(interval_ms), burst, *counts), head=head)
        call.tail = b""
        return call


class TrimStreamScript(Script):
    PATH = "ledger/trim_stream"

    def call(self, stream: str, protected: str = "", max_lag: int = 0) -> ScriptCall:
        """Trim ``stream``; a group other than ``protected`` holding it by more than
        ``max_lag`` entries (0: no cap) gives up its oldest."""
        return ScriptCall(self, (stream,), (protected, max_lag))


class TimelineReadScript(Script):
    PATH = "live/timeline_read"

    def call(
        self,
        k: ArtifactKeys,
        first_minute: int,
        end_minute: int,
        back_hours: int,
        mode: str = "",
        known: tuple[str, int, int] = ("", 0, 0),
        stamp: bytes = b"",
    ) -> ScriptCall:
        """The records of minutes ``first_minute`` .. ``end_minute - 1`` (``mode`` ``p``:
        only those of hours not rolled up yet), looking ``back_hours`` for the values the
        range starts with; the hour records not at all if ``known`` (token, first hour,
        end hour) is a current copy of them; nothing at all if ``stamp`` (of the caller's
        answer of this range) is current."""
        args = (k.artifact_id, first_minute, end_minute, mode, back_hours, *known, stamp)
        return ScriptCall(self, (k.timeline, k.timeline_index, k.info), args)


class TimelineDueScript(Script):
    PATH = "live/timeline_due"

    def call(self, index: str, before_hour: int, limit: int) -> ScriptCall:
        """Up to ``limit`` artifacts of one partition with an hour before ``before_hour``
        not rolled up yet."""
        return ScriptCall(self, (index,), (before_hour, limit))


class TimelineLiveScript(Script):
    PATH = "live/timeline_live"

    def call(self, tag: str, cursor: str, count: int, before_hour: int) -> ScriptCall:
        """One step of a scan of partition ``tag``'s artifacts with keys: those whose info
        hash holds minutes of an hour before ``before_hour``."""
        args = (Keyspace.presence_prefix(tag), cursor, count, before_hour)
        return ScriptCall(self, (Keyspace.due(tag),), args)


class TimelineDoneScript(Script):
    PATH = "live/timeline_done"

    def call(
        self,
        k: ArtifactKeys,
        from_hour: int,
        to_hour: int,
        keep_ms: int,
        hours: Sequence[tuple[int, bytes]],
    ) -> ScriptCall:
        """Hours ``from_hour`` .. ``to_hour - 1`` are in the database: replace their minutes
        by ``hours`` (hour, packed record), prune what is older than ``keep_ms``."""
        args = (k.artifact_id, from_hour, to_hour, keep_ms, *(v for pair in hours for v in pair))
        return ScriptCall(self, (k.timeline, k.timeline_index, k.info), args)


_TWO_BULKS = b"$%d\r\n%b\r\n" * 2
_User: TypeAlias = "tuple[tuple[str, ...], bytes, bytes]"
"""A user's note_view keys, those keys packed, and the keep rules packed."""


class NoteViewScript(Script):
    PATH = "stats/note_view"

    def __init__(self) -> None:
        super().__init__()
        self._users: dict[tuple[int, str, int, int], _User] = {}
        self._rules: dict[tuple[int, int], bytes] = {}
        self._head = evalsha_head(self.sha, 3, 4)

    def call(
        self,
        keys: Keyspace,
        user_id: str,
        artifact_id: str,
        version_id: str,
        recent_kept: int,
        recent_ttl_ms: int,
    ) -> ScriptCall:
        """A view's notes on the user's slot: the views index and the recent list."""
        script_keys, packed_keys, fixed = self._user(keys, user_id, recent_kept, recent_ttl_ms)
        args = (artifact_id, version_id, recent_kept, recent_ttl_ms)
        call = ScriptCall(self, script_keys, (), args, self._head + packed_keys)
        artifact, version = artifact_id.encode(), version_id.encode()
        call.tail = _TWO_BULKS % (len(artifact), artifact, len(version), version) + fixed
        return call

    def _user(self, keys: Keyspace, user_id: str, recent_kept: int, recent_ttl_ms: int) -> _User:
        """The user's keys, packed, and the keep rules packed: the same for every view of
        one user, named and packed once (a view spent as long on them as on its
        record_view call)."""
        cached = (keys.count, user_id, recent_kept, recent_ttl_ms)
        found = self._users.get(cached)
        if found is None:
            # the keep rules are every user's: packed once (their packing was a third of
            # a new user's cost), the keys once per user
            rules = (recent_kept, recent_ttl_ms)
            fixed = self._rules.get(rules)
            if fixed is None:
                fixed = self._rules[rules] = pack_bulks(rules)
            script_keys: tuple[str, ...] = (
                keys.user_views_index(user_id),
                keys.user_recent(user_id),
                keys.user_recent_versions(user_id),
            )
            if len(self._users) >= _CACHED_HEADS:
                self._users.clear()
            found = self._users[cached] = (script_keys, pack_bulks(script_keys), fixed)
        return found


class ViewScript(Script):
    """``stats/view.lua``: a view's notes and its count in one call, for a SINGLE server
    only (its keys span the user's slot and the artifact's). Its keys and arguments are
    record_view's, then note_view's keys and keep rules; both packed from those scripts'
    caches (what every view of one version, and of one user, shares)."""

    PATH = "stats/view"

    def __init__(self, record: RecordViewScript, note: NoteViewScript) -> None:
        super().__init__()
        self._record = record
        self._note = note
        self._head = evalsha_head(self.sha, 13, 9)

    def call(
        self,
        keys: Keyspace,
        artifact_id: str,
        version_id: str,
        user_id: str,
        session_id: str | None,
        view_id: str,
        debounce_ms: int,
        hidden: bool,
        recent_kept: int,
        recent_ttl_ms: int,
    ) -> ScriptCall:
        found = self._record._shared_keys(keys, artifact_id, version_id)
        shared, packed, prefix, artifact, version = found
        user_keys, packed_user, fixed = self._note._user(keys, user_id, recent_kept, recent_ttl_ms)
        debounce = prefix + user_id
        args = _view_args(
            artifact_id, version_id, user_id, session_id, view_id, debounce_ms, hidden
        )
        head = self._head + bulk(debounce) + packed + packed_user
        call = ScriptCall(
            self, (debounce, *shared, *user_keys), (), (*args, recent_kept, recent_ttl_ms), head
        )
        tail = _view_tail(artifact, version, user_id, session_id, view_id, debounce_ms, hidden)
        call.tail = tail + fixed
        return call


class EraseViewsScript(Script):
    PATH = "privacy/erase_views"

    def call(
        self, keys: Keyspace, artifact_id: str, version_id: str, user_id: str, tombstone: str
    ) -> ScriptCall:
        script_keys = (
            keys.view_debounce(artifact_id, version_id, user_id),
            keys.artifact_viewers(artifact_id),
            keys.version_viewers(artifact_id, version_id),
            keys.version_viewers_by_time(artifact_id, version_id),
            keys.version_stats(artifact_id, version_id),
        )
        return ScriptCall(self, script_keys, (user_id, tombstone))


class ScrubStreamScript(Script):
    PATH = "privacy/scrub_stream"

    def call(self, stream: str, user_id: str, tombstone: str, most: int, apart: str) -> ScriptCall:
        """``apart``: the group whose holdings the answer counts apart."""
        return ScriptCall(self, (stream,), (user_id, tombstone, most, apart))


class ErasureOpenScript(Script):
    PATH = "privacy/erasure_open"

    def call(self, keys: Keyspace, user_id: str, erasure_id: str, tombstone: str) -> ScriptCall:
        script_keys = (keys.user_erasure(user_id), keys.erasure(erasure_id))
        return ScriptCall(self, script_keys, (erasure_id, user_id, tombstone))


class ErasureDoneScript(Script):
    PATH = "privacy/erasure_done"

    def call(self, keys: Keyspace, user_id: str, erasure_id: str, keep_ms: int) -> ScriptCall:
        script_keys = (keys.erasure(erasure_id), keys.user_erasure(user_id))
        return ScriptCall(self, script_keys, (keep_ms,))


class ErasureTakeScript(Script):
    PATH = "privacy/erasure_take"

    def call(self, keys: Keyspace, lease_ms: int, erasure_id: str = "") -> ScriptCall:
        """Take ``erasure_id`` if it is due (or, without it, any due erasure)."""
        return ScriptCall(self, (keys.erasures_due(),), (lease_ms, erasure_id))


class Scripts:
    """Every script of the service. One set per connection: the writers' packed heads are
    cached here."""

    def __init__(self) -> None:
        self.heartbeat = HeartbeatScript()
        self.leave = LeaveScript()
        self.sweep = SweepScript()
        self.erase_user = EraseUserScript()
        self.online = OnlineScript()
        self.presence = PresencePageScript()
        self.workers = WorkersScript()
        self.session_checks = SessionChecks()
        self.where_now_add = WhereNowAddScript()
        self.where_now_read = WhereNowReadScript()
        self.where_now_prune = WhereNowPruneScript()
        self.recent_page = RecentPageScript()
        self.record_view = RecordViewScript()
        self.heartbeat_engaged = HeartbeatEngagedScript()
        self.leave_engaged = LeaveEngagedScript()
        self.engage_done = EngageDoneScript()
        self.engage_fold = EngageFoldScript()
        self.viewers = ViewersScript()
        self.set_latest = SetLatestScript()
        self.seen_check = SeenCheckScript()
        self.hide_viewer = HideViewerScript()
        self.privacy_set = PrivacySetScript()
        self.trim_stream = TrimStreamScript()
        self.settle_tokens = SettleTokensScript()
        self.timeline_read = TimelineReadScript()
        self.timeline_due = TimelineDueScript()
        self.timeline_live = TimelineLiveScript()
        self.timeline_done = TimelineDoneScript()
        self.note_view = NoteViewScript()
        self.view = ViewScript(self.record_view, self.note_view)
        self.erase_views = EraseViewsScript()
        self.scrub_stream = ScrubStreamScript()
        self.erasure_open = ErasureOpenScript()
        self.erasure_done = ErasureDoneScript()
        self.erasure_take = ErasureTakeScript()

    @property
    def all(self) -> tuple[Script, ...]:
        return tuple(v for v in vars(self).values() if isinstance(v, Script))
