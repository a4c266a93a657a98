"""The retry rules shared with the browser SDK: exponential backoff with jitter, never
sooner than ``Retry-After``, which is waited out past the backoff's cap (up to a bound of
its own: coming back sooner only meets another 429)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC
from email.utils import parsedate_to_datetime

__all__ = ["backoff_s", "parse_retry_after"]

BASE_S = 1.0


def backoff_s(
    attempt: int,
    retry_after_s: float | None,
    cap_s: float,
    random: Callable[[], float],
    *,
    longest_s: float,
) -> float:
    """Delay before retry number ``attempt`` (from 1): 1 s, 2 s, 4 s ... up to ``cap_s``,
    half of it jittered; at least ``Retry-After`` (plus a little jitter so clients do not
    come back together), even past ``cap_s``, but no longer than ``longest_s``."""
    exp = min(cap_s, BASE_S * 2.0 ** min(attempt - 1, 20))
    delay = exp / 2 + random() * exp / 2
    if retry_after_s is not None:
        asked = retry_after_s + random() * min(1.0, retry_after_s * 0.1)
        delay = max(delay, min(asked, longest_s))
    return delay


def parse_retry_after(value: str | None, now_s: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds (what the service sends) or an
    HTTP date (what a proxy or load balancer in front of it may send, and the browser SDK
    reads too); None if absent or unreadable."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return _seconds_until(value, time.time() if now_s is None else now_s)
    return seconds if seconds >= 0 else None


def _seconds_until(http_date: str, now_s: float) -> float | None:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC by RFC 5322, naive here
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now_s)
