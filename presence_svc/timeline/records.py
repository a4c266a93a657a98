"""The timeline's Redis side: reading minute records (``lua/live/timeline_read.lua``), and
for the worker the artifacts due for rollup and marking hours rolled up."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import msgspec

from presence_svc.redis.connection import RedisConnection, as_text
from presence_svc.redis.keys import Keyspace
from presence_svc.timeline.series import Counts, MinuteRecord

__all__ = ["KnownHours", "MinuteRecords", "TimelineRecords", "hour_record"]

_RECORD = msgspec.msgpack.Decoder(tuple[int, int, int, int, int, int])
_HOUR_RECORD = msgspec.msgpack.Encoder()


@dataclass(frozen=True, slots=True)
class KnownHours:
    """A copy of an artifact's hour records: each of hours ``lo`` .. ``hi - 1`` that has
    one, as the hash was at ``token`` (``timeline_read.lua``). Hour records change only
    with the token, so a read with a current copy gets none of them from Redis."""

    token: str
    lo: int
    hi: int
    hours: dict[int, bytes]
    cost: int
    """What keeping it costs, in bytes (``answer.Fragments``' budget)."""


_RECORD_OVERHEAD = 120
"""Bytes a kept hour record costs besides its own: its bytes object, its int, the slot."""


@dataclass(frozen=True)
class MinuteRecords:
    pending_hour: int | None
    """The artifact's oldest hour not rolled up into the database yet; None: none. Hours
    before it are kept as hour records, from it on as minute records."""
    carry: Counts | None
    """The values at the first minute asked for, before any change in it (None: Redis
    does not know them)."""
    hours: dict[int, bytes]
    """Rolled-up hour -> its record as Redis holds it (``pieces.decode_hour``), for the
    hours asked for that had a change."""
    known: KnownHours | None
    """``hours`` as a copy to pass to the next read (None: the hash has no token), the
    caller's own when Redis found it current."""
    changing: tuple[Any, ...]
    """What the answer is made of besides ``hours`` (the token among it): Redis's reply
    but the hour records, as it came; its last ones are minute, record, ..."""
    first_minute_at: int
    """Where in ``changing`` the minute records start."""
    stamp: bytes = b""
    """What Redis's reply can change with (``timeline_read.lua``): a later read of the same
    range passing it gets no records while it holds (``TimelineRecords.unless_current``);
    empty in ``unrolled_only`` reads and for a hash without a token."""

    @cached_property
    def records(self) -> dict[int, MinuteRecord]:
        """Minute -> its record, for the minutes not rolled up that saw a change (decoded
        when asked: an answer kept whole needs none)."""
        raw, decode = self.changing, _RECORD.decode
        return {
            int(raw[i]): MinuteRecord(*decode(raw[i + 1]))
            for i in range(self.first_minute_at, len(raw), 2)
        }


def hour_record(last: Counts, online: list[int], sessions: list[int]) -> bytes:
    """What ``timeline_done.lua`` keeps of a rolled-up hour (60 values each)."""
    values = [last.online, last.sessions]
    for pair in zip(online, sessions, strict=True):
        values += pair
    return _HOUR_RECORD.encode(values)


class TimelineRecords:
    def __init__(self, redis: RedisConnection, keys: Keyspace, keep_ms: int) -> None:
        self.redis = redis
        self.keys = keys
        self.back_hours = keep_ms // 3_600_000 + 1

    async def minutes(
        self,
        artifact_id: str,
        first: int,
        end: int,
        *,
        unrolled_only: bool = False,
        known: KnownHours | None = None,
    ) -> MinuteRecords:
        """What Redis holds of minutes ``first`` .. ``end - 1``; with ``unrolled_only``,
        only of those not rolled up yet (nothing when all are). The hour records come from
        ``known`` when it is a current copy of them."""
        got = await self.unless_current(artifact_id, first, end, unrolled_only, known)
        assert got is not None  # no stamp given: never current
        return got

    async def unless_current(
        self,
        artifact_id: str,
        first: int,
        end: int,
        unrolled_only: bool = False,
        known: KnownHours | None = None,
        stamp: bytes = b"",
    ) -> MinuteRecords | None:
        """``minutes``, or None when ``stamp`` (a ``MinuteRecords.stamp`` of a read of the
        same range) is current: Redis holds the same for it, so sends none of it."""
        scripts = self.redis.scripts
        mode = "p" if unrolled_only else ""
        k = self.keys.artifact(artifact_id)
        held = ("", 0, 0) if known is None else (known.token, known.lo, known.hi)
        call = scripts.timeline_read.call(k, first, end, self.back_hours, mode, held, stamp)
        raw = await self.redis.run(call)
        pending, users, sessions, count = (int(v) for v in raw[:4])
        if count == -2:
            return None
        token, lo, hi = as_text(raw[4]), int(raw[5]), int(raw[6])
        split = 8 + 2 * max(count, 0)
        if count < 0 and known is not None:  # Redis found the copy current
            hours = known.hours
        else:
            hours = {int(raw[i]): bytes(raw[i + 1]) for i in range(8, split, 2)}
            if token:
                cost = sum(len(r) + _RECORD_OVERHEAD for r in hours.values()) + _RECORD_OVERHEAD
                known = KnownHours(token, lo, hi, hours, cost)
            else:
                known = None
        return MinuteRecords(
            pending if pending >= 0 else None,
            Counts(users, sessions) if users >= 0 else None,
            hours,
            known,
            (*raw[:3], *raw[4:7], *raw[split:]),  # not how many hours came: that is no content
            6,
            bytes(raw[7]),
        )

    async def due(self, tag: str, before_hour: int, limit: int) -> list[tuple[str, int]]:
        """Artifacts of partition ``tag`` with an hour before ``before_hour`` not rolled
        up, and their oldest such hour."""
        call = self.redis.scripts.timeline_due.call(
            self.keys.timeline_index(tag), before_hour, limit
        )
        raw = await self.redis.run(call)
        return [(as_text(raw[i]), int(float(raw[i + 1]))) for i in range(0, len(raw), 2)]

    async def live(
        self, tag: str, cursor: str, before_hour: int, count: int
    ) -> tuple[str, list[tuple[str, int]]]:
        """One step of a scan of partition ``tag``'s artifacts with keys (start with
        ``"0"``): the next cursor (``"0"``: done), and those whose info hash holds minutes
        of an hour before ``before_hour``, with their oldest such hour."""
        call = self.redis.scripts.timeline_live.call(tag, cursor, count, before_hour)
        raw = await self.redis.run(call)
        found = [(as_text(raw[i]), int(raw[i + 1])) for i in range(1, len(raw), 2)]
        return as_text(raw[0]), found

    async def done(
        self,
        artifact_id: str,
        from_hour: int,
        to_hour: int,
        keep_ms: int,
        hours: list[tuple[int, bytes]],
    ) -> bool:
        """Hours ``from_hour`` .. ``to_hour - 1`` are in the database: keep ``hours`` (hour,
        ``hour_record``) instead of their minutes. False if another worker did it first."""
        call = self.redis.scripts.timeline_done.call(
            self.keys.artifact(artifact_id), from_hour, to_hour, keep_ms, hours
        )
        return int(await self.redis.run(call)) >= 0
