"""A read of minutes as pieces, one per hour at most: a rolled-up hour stays its record as
Redis holds it (undecoded, so an answer can reuse what it made of the same record before:
``timeline.answer``); a quiet hour is one value carried through it; the minutes not rolled
up are values. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import msgspec

from presence_svc.timeline.series import MINUTE_MS, Counts, MinuteRecord, Series

__all__ = [
    "HourPiece",
    "Piece",
    "ValuesPiece",
    "decode_hour",
    "joined",
    "minute_pieces",
    "minute_series",
]

_HOUR = msgspec.msgpack.Decoder(list[int])


def decode_hour(record: bytes) -> list[int]:
    """A rolled-up hour's record (``timeline_done.lua``): [last users, last sessions, then
    users and sessions of each of its 60 minutes]."""
    return _HOUR.decode(record)


class HourPiece(NamedTuple):
    """Minutes ``lo`` .. ``hi - 1`` of rolled-up hour ``hour`` (ms / 3 600 000), from its
    record. (Tuples: a week's read makes 168 of them, a frozen dataclass costs 3x more.)"""

    hour: int
    record: bytes
    lo: int
    hi: int

    @property
    def first(self) -> int:
        return self.hour * 60 + self.lo

    def values(self) -> tuple[list[int], list[int]]:
        """The users and sessions of its minutes."""
        values = decode_hour(self.record)
        lo, hi = self.lo, self.hi
        return values[2 + 2 * lo : 2 + 2 * hi : 2], values[3 + 2 * lo : 3 + 2 * hi : 2]


class ValuesPiece(NamedTuple):
    """Minutes ``first`` .. ``first + len(online) - 1``, within one hour."""

    first: int
    online: list[int]
    sessions: list[int]
    carried: bool
    """No minute of it had a change: each has the values the last change before left."""

    def values(self) -> tuple[list[int], list[int]]:
        return self.online, self.sessions


Piece = HourPiece | ValuesPiece


def _counts(last: Counts | bytes) -> Counts:
    if isinstance(last, bytes):  # the hour record's last values, decoded when needed
        values = decode_hour(last)
        return Counts(values[0], values[1])
    return last


def minute_pieces(
    first: int,
    end: int,
    carry: Counts,
    records: Mapping[int, MinuteRecord],
    hours: Mapping[int, bytes] | None = None,
    split: int | None = None,
) -> tuple[list[Piece], Counts]:
    """Minutes ``first`` .. ``end - 1`` (ms / 60 000) as pieces, and the values the last
    minute ended with: a minute with a record has its peak, one without the values the last
    change left (``carry`` before the first). Minutes before ``split`` (a whole hour; None:
    all) come from ``hours``, the rolled-up hours' records; the others from ``records``."""
    pieces: list[Piece] = []
    last: Counts | bytes = carry
    get = records.get
    minute = first
    while minute < end:
        hour = minute // 60
        stop = min(end, (hour + 1) * 60)
        if hours is not None and (split is None or minute < split):
            record = hours.get(hour)
            if record is None:
                last = _counts(last)
                count = stop - minute
                online, sessions = [last.online] * count, [last.sessions] * count
                pieces.append(ValuesPiece(minute, online, sessions, carried=True))
            else:
                pieces.append(HourPiece(hour, record, minute - hour * 60, stop - hour * 60))
                last = record
        else:
            last_online, last_sessions = _counts(last)
            online, sessions = [], []
            quiet = True
            for m in range(minute, stop):
                got = get(m)
                if got is None:
                    online.append(last_online)
                    sessions.append(last_sessions)
                else:
                    quiet = False
                    online.append(got.peak_online)
                    sessions.append(got.peak_sessions)
                    last_online, last_sessions = got.last_online, got.last_sessions
            pieces.append(ValuesPiece(minute, online, sessions, carried=quiet))
            last = Counts(last_online, last_sessions)
        minute = stop
    return pieces, _counts(last)


def minute_series(
    first: int,
    end: int,
    carry: Counts,
    records: Mapping[int, MinuteRecord],
    hours: Mapping[int, bytes] | None = None,
    split: int | None = None,
) -> Series:
    """``minute_pieces`` as one series."""
    pieces, last = minute_pieces(first, end, carry, records, hours, split)
    return joined(first, pieces, last)


def joined(first: int, pieces: list[Piece], last: Counts) -> Series:
    """The pieces of minutes from ``first`` on as one series (``last``: what they ended with)."""
    online: list[int] = []
    sessions: list[int] = []
    for piece in pieces:
        users, tabs = piece.values()
        online += users
        sessions += tabs
    return Series(first * MINUTE_MS, MINUTE_MS, online, sessions, last)
