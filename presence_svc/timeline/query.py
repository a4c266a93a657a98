"""Reading a timeline: minutes from Redis; hours and days from the database's rollup,
with Redis for the hours the worker has not rolled up yet."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import msgspec

from presence_svc import __version__
from presence_svc.redis.connection import RedisConnection
from presence_svc.redis.keys import Keyspace
from presence_svc.settings import Settings
from presence_svc.timeline.answer import Fragments, Whole, minutes_json
from presence_svc.timeline.pieces import Piece, joined, minute_pieces
from presence_svc.timeline.records import KnownHours, MinuteRecords, TimelineRecords
from presence_svc.timeline.series import (
    HOUR_MS,
    MINUTE_MS,
    STEPS,
    Counts,
    HourValues,
    Series,
    hour_values,
    hours_from_minutes,
    step_series,
)
from presence_svc.timeline.store import TimelineStore

__all__ = ["MinutesRead", "StampedRead", "Timeline", "points_between"]

_SIGN = msgspec.msgpack.Encoder()
_FORMAT = f"timeline-1m/{__version__}".encode()
"""In every signature: an answer made by other code is another answer."""


def points_between(since_ms: int, until_ms: int, step: str) -> int:
    """How many points ``since`` .. ``until`` makes at ``step`` (the first step is the one
    ``since`` falls in; the last, the one before ``until``)."""
    size = STEPS[step]
    first = since_ms // size
    end = -(-until_ms // size)
    return max(0, end - first)


@dataclass(frozen=True, slots=True)
class MinutesRead:
    """What a ``1m`` read of minutes ``first`` .. ``end - 1`` is made of, and its
    ``signature``: equal signatures, equal answers (it covers all that can change them)."""

    artifact_id: str
    first: int
    end: int
    got: MinuteRecords
    carry: Counts
    signature: bytes
    prefix: bytes
    """The signature of the hours before the split alone (the token, the score, the start
    values): what the answer's bytes up to its ``Cut`` are made of."""

    def pieces(self) -> tuple[list[Piece], Counts]:
        """The minutes as ``pieces.minute_pieces``."""
        got = self.got
        split = None if got.pending_hour is None else got.pending_hour * 60
        return minute_pieces(self.first, self.end, self.carry, got.records, got.hours, split)

    def etag(self, gzip: bool) -> str:
        """The answer's entity tag (RFC 9110), one per content coding: the same from every
        process for the same timeline."""
        # "g2": the gzip whose hours refer to the hour before (other bytes than "g"'s)
        digest = hashlib.blake2b(self.signature, digest_size=12, person=b"g2" if gzip else b"")
        return f'"{digest.hexdigest()}{"-gz" if gzip else ""}"'


class StampedRead:
    """A ``MinutesRead`` kept with what keeping it costs (``answer.Fragments``): while its
    records' stamp is current, a read of its range is this one."""

    __slots__ = ("cost", "read")

    def __init__(self, read: MinutesRead) -> None:
        self.read = read
        self.cost = (
            len(read.signature)
            + len(read.prefix)
            + len(read.got.stamp)
            + 48 * len(read.got.changing)
            + _KEPT_OVERHEAD
        )


_KEPT_OVERHEAD = 600
"""Bytes a kept read costs besides its signatures and Redis's reply: its objects, the key."""


class Timeline:
    def __init__(self, redis: RedisConnection, store: TimelineStore, settings: Settings) -> None:
        self.records = TimelineRecords(redis, Keyspace(settings.partitions), settings.timeline_ms)
        self.store = store
        self.fragments = Fragments(settings.timeline_cache_mb * 1_048_576)
        """The encoded points of hours read before (``timeline.answer``), in this process."""

    @staticmethod
    def now_ms() -> int:
        return int(time.time() * 1000)

    async def read(self, artifact_id: str, since_ms: int, until_ms: int, step: str) -> Series:
        """The points of ``since`` .. ``until`` at ``step`` (``1m``, ``1h`` or ``1d``)."""
        size = STEPS[step]
        first, end = since_ms // size, -(-until_ms // size)
        if step == "1m":
            return await self._minutes(artifact_id, first, max(first, end))
        per = size // HOUR_MS
        return await self._hours(artifact_id, first * per, max(first, end) * per, per)

    async def _minutes(self, artifact_id: str, first: int, end: int) -> Series:
        pieces, last = await self.minute_pieces(artifact_id, first, end)
        return joined(first, pieces, last)

    async def minute_pieces(
        self, artifact_id: str, first: int, end: int
    ) -> tuple[list[Piece], Counts]:
        """Minutes ``first`` .. ``end - 1`` (ms / 60 000) as ``pieces.minute_pieces``."""
        return (await self.minutes_read(artifact_id, first, end)).pieces()

    async def minutes_read(self, artifact_id: str, first: int, end: int) -> MinutesRead:
        """What minutes ``first`` .. ``end - 1`` (ms / 60 000) are made of: the hour records
        from this process's copy while Redis says it is current (``KnownHours``); the last
        read of the same range, as it was, while Redis says its stamp is (``StampedRead``)."""
        at = ("read", artifact_id, first, end)
        last = self.fragments.get(at, StampedRead)
        kept = ("hours", artifact_id)
        known = self.fragments.get(kept, KnownHours)
        stamp = b"" if last is None else last.read.got.stamp
        got = await self.records.unless_current(artifact_id, first, end, known=known, stamp=stamp)
        if got is None:  # Redis holds what it held for the last read: the same read
            assert last is not None
            return last.read
        if got.known is not None and got.known is not known:
            self.fragments.put(kept, got.known)
        split = None if got.pending_hour is None else got.pending_hour * 60
        carry = got.carry
        rolled_up = split is None or first < split
        covered = first // 60 in got.hours if rolled_up else first in got.records
        changing = got.changing
        # the token, the score, the start values (what Redis says before its minute records)
        base: list[object] = [_FORMAT, artifact_id, first, end, *changing[: got.first_minute_at]]
        if got.known is None:  # no token: the hour records themselves
            base += [v for pair in sorted(got.hours.items()) for v in pair]
        from_db = carry is None and not covered
        if from_db:  # Redis knows nothing before: the rollup's last hour
            before, _ = await self.store.hours(artifact_id, first * MINUTE_MS, first * MINUTE_MS)
            carry = Counts(before.last_online, before.last_sessions) if before else None
            base += ["db", *(carry or ())]
        carry = carry or Counts(0, 0)
        minutes = changing[got.first_minute_at :]
        read = MinutesRead(
            artifact_id,
            first,
            end,
            got,
            carry,
            _SIGN.encode([*base, *minutes]),
            _SIGN.encode(base),
        )
        if got.stamp and not from_db:
            self.fragments.put(at, StampedRead(read))
        else:  # no stamp, or the database had a part in it: a stamp does not cover that
            self.fragments.drop(at)
        return read

    def minutes_answer(self, read: MinutesRead, *, gzip: bool = False) -> Whole:
        """``answer.minutes_json`` of ``read`` and its entity tag: what was answered before
        to a read of the same signature, as it was (no point made, nothing joined)."""
        key = ("whole", read.artifact_id, read.first, read.end, gzip)
        whole = self.fragments.get(key, Whole)
        if whole is not None and whole.signature == read.signature:
            return whole
        again = None
        if whole is not None and whole.prefix == read.prefix:  # only later minutes changed
            again = (whole.body, whole.cut)
        pieces, _ = read.pieces()
        split = read.got.pending_hour
        before = len(pieces) if split is None else sum(p.first < split * 60 for p in pieces)
        body, cut = minutes_json(
            read.artifact_id, pieces, self.fragments, gzip=gzip, before=before, again=again
        )
        whole = Whole(read.signature, body, read.etag(gzip), read.prefix, cut)
        self.fragments.put(key, whole)
        return whole

    async def _hours(self, artifact_id: str, first: int, end: int, per: int) -> Series:
        got = await self.records.minutes(artifact_id, first * 60, end * 60, unrolled_only=True)
        # Hours before the first one not rolled up come from the database.
        split = end if got.pending_hour is None else max(first, got.pending_hour)
        before, rows = await self.store.hours(artifact_id, first * HOUR_MS, split * HOUR_MS)
        hours: dict[int, HourValues] = hour_values(rows)
        hours.update(hours_from_minutes(got.records))
        carry = Counts(before.last_online, before.last_sessions) if before else Counts(0, 0)
        if split <= first and got.carry is not None:
            carry = got.carry
        return step_series(first, end, per, hours, carry)
