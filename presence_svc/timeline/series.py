"""The pure part of a timeline read: steps, carrying values through quiet minutes and
hours, buckets, the peak, and the points' times. No I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

__all__ = [
    "HOUR_MS",
    "MAX_POINTS",
    "MINUTE_MS",
    "STEPS",
    "Counts",
    "HourValues",
    "MinuteRecord",
    "Peak",
    "Series",
    "hour_values",
    "hours_from_minutes",
    "stamp",
    "stamps",
    "step_series",
]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
STEPS: dict[str, int] = {"1m": MINUTE_MS, "1h": HOUR_MS, "1d": DAY_MS}
"""The steps a timeline can be read at, and their length (ms)."""
MAX_POINTS = 10_080
"""Points one read answers at most (7 days of minutes, a week's chart at ``1m``); a longer
range needs a longer step."""


class MinuteRecord(NamedTuple):
    """One minute as ``lib/timeline.lua`` stores it."""

    peak_online: int
    peak_sessions: int
    last_online: int
    last_sessions: int
    start_online: int
    start_sessions: int


class HourValues(NamedTuple):
    """One hour (or day): its peak, and the values it ended with (carried on)."""

    peak_online: int
    peak_sessions: int
    last_online: int
    last_sessions: int


class Counts(NamedTuple):
    online: int
    sessions: int


@dataclass(frozen=True, slots=True)
class Peak:
    online: int
    at_ms: int | None
    """The start of the first step with the most users online; None without points."""


@dataclass(frozen=True, slots=True)
class Series:
    """Points ``first_ms``, ``first_ms + step_ms``, ...: (online, sessions) of each step
    (its highest values)."""

    first_ms: int
    step_ms: int
    online: list[int]
    sessions: list[int]
    last: Counts
    """The values the last step ended with."""

    def peak(self) -> Peak:
        if not self.online:
            return Peak(0, None)
        top = max(self.online)
        return Peak(top, self.first_ms + self.online.index(top) * self.step_ms)


def hours_from_minutes(records: Mapping[int, MinuteRecord]) -> dict[int, HourValues]:
    """Hour (ms / 3 600 000) -> its values, from the minute records of the hours they are
    in. A minute record's peak includes the values it started with, so the hour's peak is
    the highest of its records' peaks."""
    hours: dict[int, HourValues] = {}
    for minute in sorted(records):
        record = records[minute]
        hour = minute // 60
        had = hours.get(hour)
        hours[hour] = HourValues(
            max(record.peak_online, had.peak_online if had else 0),
            max(record.peak_sessions, had.peak_sessions if had else 0),
            record.last_online,
            record.last_sessions,
        )
    return hours


def step_series(
    first_hour: int,
    end_hour: int,
    hours_per_step: int,
    hours: Mapping[int, HourValues],
    carry: Counts,
) -> Series:
    """Steps of ``hours_per_step`` hours from hour ``first_hour`` to ``end_hour`` (excluded,
    a whole number of steps): each step's peak, hours without values carrying the last."""
    online: list[int] = []
    sessions: list[int] = []
    last_online, last_sessions = carry
    for start in range(first_hour, end_hour, hours_per_step):
        peak_online = peak_sessions = -1
        for hour in range(start, start + hours_per_step):
            values = hours.get(hour)
            if values is None:
                peak_online = max(peak_online, last_online)
                peak_sessions = max(peak_sessions, last_sessions)
            else:
                peak_online = max(peak_online, values.peak_online)
                peak_sessions = max(peak_sessions, values.peak_sessions)
                last_online, last_sessions = values.last_online, values.last_sessions
        online.append(peak_online)
        sessions.append(peak_sessions)
    return Series(
        first_hour * HOUR_MS,
        hours_per_step * HOUR_MS,
        online,
        sessions,
        Counts(last_online, last_sessions),
    )


def hour_values(rows: Iterable[tuple[int, HourValues]]) -> dict[int, HourValues]:
    """Hour start (ms) -> values, as hour numbers (ms / 3 600 000)."""
    return {start // HOUR_MS: values for start, values in rows}


_DAYS: dict[int, str] = {}
_CLOCK = [f"T{h:02d}:{m:02d}:00.000Z" for h in range(24) for m in range(60)]
"""Each minute of a day as its ISO 8601 tail: a 10 000-point answer formats its times in
a table lookup each (``timefmt.to_iso`` costs ~2 us per new second)."""


def stamps(first_ms: int, step_ms: int, count: int) -> list[str]:
    """The times of ``count`` steps from ``first_ms`` (a whole minute), as ``stamp``; a day
    of minutes in one slice of the table."""
    if step_ms != MINUTE_MS:
        return [stamp(first_ms + i * step_ms) for i in range(count)]
    out: list[str] = []
    ms, end = first_ms, first_ms + count * MINUTE_MS
    while ms < end:
        day, rest = divmod(ms, DAY_MS)
        lo = rest // MINUTE_MS
        hi = min(1440, lo + (end - ms) // MINUTE_MS)
        date = stamp(day * DAY_MS)[:10]
        out += [date + clock for clock in _CLOCK[lo:hi]]
        ms += (hi - lo) * MINUTE_MS
    return out


def stamp(ms: int) -> str:
    """``ms``, a whole minute, as ``timefmt.to_iso`` writes it."""
    day, rest = divmod(ms, DAY_MS)
    date = _DAYS.get(day)
    if date is None:
        if len(_DAYS) > 4096:
            _DAYS.clear()
        date = _DAYS[day] = datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%d")
    return date + _CLOCK[rest // MINUTE_MS]
