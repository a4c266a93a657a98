"""The garbage collector's pace in a long-running server or worker process.

With CPython's default thresholds (700, 10, 10) a service under load ran a young pass
some 40 times a second. Each pass finds the requests then in flight alive and promotes them,
so the oldest generation fills with objects that die right after, and a full pass (25-40 ms
of CPU over the process's ~45 000 tracked objects, all of it a stall of the event loop) ran
every 3-5 s. Measured on the views bench: 21-29 us of GC CPU per request, against 1.2 us
with young passes at ``YOUNG_THRESHOLD`` (one full pass in 25 s instead of 5-9). The service
makes almost no reference cycles (about one per young pass), so what rarer passes leave
for later is small.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_THRESHOLD", "settle"]

YOUNG_THRESHOLD = 20_000
"""Net new tracked objects between young passes (CPython's default: 700)."""


def settle() -> None:
    """Once start-up is done: start-up objects out of every pass (they never change) and
    young passes at ``YOUNG_THRESHOLD``; the older generations keep their default pace."""
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, oldest)
