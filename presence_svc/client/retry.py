"""The retry rules shared with the browser SDK: exponential backoff with jitter, never
sooner than ``Retry-After``."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["backoff_s", "parse_retry_after"]

BASE_S = 1.0


def backoff_s(
    attempt: int, retry_after_s: float | None, cap_s: float, random: Callable[[], float]
) -> float:
    """Delay before retry number ``attempt`` (from 1): 1 s, 2 s, 4 s ... half of it jittered,
    at least ``Retry-After`` (plus a little jitter so clients do not come back together)."""
    exp = min(cap_s, BASE_S * 2.0 ** min(attempt - 1, 20))
    delay = exp / 2 + random() * exp / 2
    if retry_after_s is not None:
        delay = max(delay, retry_after_s + random() * min(1.0, retry_after_s * 0.1))
    return min(delay, cap_s)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (the HTTP-date form is not used by the service)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
