"""Times on the wire: ISO 8601 UTC with milliseconds, e.g. ``2026-11-25T10:00:00.123Z``.
Inside, times are integer milliseconds since the epoch (Redis ``TIME``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["from_iso", "to_iso"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_iso(ms: int | float) -> str:
    ms = int(ms)
    seconds, millis = divmod(ms, 1000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{millis:03d}Z"


def from_iso(text: str) -> int:
    """Milliseconds since the epoch; accepts any ISO 8601 form with an offset or ``Z``.

    Raises ValueError for text that is not a time or has no time zone (ambiguous).
    """
    value = datetime.fromisoformat(text.replace("z", "Z"))
    if value.tzinfo is None:
        raise ValueError("a time zone is required (e.g. Z)")
    return (value - _EPOCH) // _MS
