"""When a failed delivery is tried again: exponential backoff with jitter, never sooner
than the receiver's ``Retry-After``; after the last step the delivery is a failure.

The default steps (``PRESENCE_WEBHOOK_RETRY_SCHEDULE``): 5 s, 30 s, 2 min, 10 min, 30 min,
1 h, 2 h, 4 h, 8 h, 8 h: ten retries over about 23.7 h, each +-20% at random so that a
receiver back from an outage is not hit by every endpoint's retries at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from presence_svc.settings import WEBHOOK_RETRY_SCHEDULE

__all__ = ["DEFAULT_STEPS", "JITTER", "RetrySchedule", "parse_retry_after"]

DEFAULT_STEPS = WEBHOOK_RETRY_SCHEDULE
JITTER = 0.2
RETRY_AFTER_MAX_S = 86400.0


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    steps: tuple[float, ...] = DEFAULT_STEPS

    def delay_s(self, attempts: int, retry_after_s: float | None = None) -> float | None:
        """Seconds until the next try after ``attempts`` failed ones; None: give up."""
        if attempts > len(self.steps):
            return None
        step = self.steps[attempts - 1]
        delay = step * random.uniform(1 - JITTER, 1 + JITTER)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, RETRY_AFTER_MAX_S))
        return delay


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now_s)
