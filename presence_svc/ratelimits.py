"""Per-user rate limits: the route classes, their token buckets and ``PRESENCE_RATE_LIMITS``.

A bucket holds ``burst`` tokens and refills at ``rate`` tokens a second; each request of its
class takes one. The defaults are generous: a user with a dozen tabs (a heartbeat each
every 15 s, state changes, a view per open) stays far below them, while a runaway client
sending hundreds of heartbeats a second meets them within a fraction of a second.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = [
    "DEFAULT_RATE_LIMITS",
    "HEARTBEAT",
    "READ",
    "VIEW",
    "Bucket",
    "RateLimits",
    "RouteClass",
    "parse_rate_limits",
]


class RouteClass(StrEnum):
    HEARTBEAT = "heartbeat"
    """POST /v1/heartbeat and /v1/leave."""
    VIEW = "view"
    """POST /v1/views."""
    READ = "read"
    """Every GET under /v1/ (counts, presence lists, event streams, stats, ledger, ...),
    and POST seen/check (a read whose list of users is too long for a query)."""
    ADMIN = "admin"
    """The administrative writes a token below admin may make: PUT .../latest (a
    publisher marking a version) and PUT /v1/users/{id}/privacy (a user's own settings).
    The other writes (the directory's profiles, erasures, webhooks) need an admin token,
    which is never limited."""


# The classes as plain module names, for the request path: on Python 3.11 reading an enum
# member off its class (``RouteClass.HEARTBEAT``) costs ~0.3 µs, a module global ~0.03.
HEARTBEAT: Final = RouteClass.HEARTBEAT
VIEW: Final = RouteClass.VIEW
READ: Final = RouteClass.READ


@dataclass(frozen=True, slots=True)
class Bucket:
    rate: float
    """Tokens a second."""
    burst: int
    """Tokens at most: how many requests may come at once."""

    @property
    def interval_ms(self) -> float:
        """How long one token takes to come back."""
        return 1000.0 / self.rate

    @property
    def window_s(self) -> int:
        """Seconds an empty bucket takes to fill: the window of the advertised quota."""
        return max(1, math.ceil(self.burst / self.rate))

    def __str__(self) -> str:
        rate = f"{self.rate:g}/s" if self.rate >= 1 else f"{self.rate * 60:g}/m"
        return f"{rate}:burst={self.burst}"


_DEFAULTS = {
    RouteClass.HEARTBEAT: Bucket(rate=20, burst=60),
    RouteClass.VIEW: Bucket(rate=10, burst=50),
    RouteClass.READ: Bucket(rate=50, burst=200),
    # A publisher's backend is one user for every artifact it marks: room for a batch of
    # a few hundred versions published at once, far above a person changing settings.
    RouteClass.ADMIN: Bucket(rate=20, burst=300),
}


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The bucket of each limited route class; a class missing is not limited."""

    buckets: tuple[tuple[RouteClass, Bucket], ...] = tuple(_DEFAULTS.items())

    def get(self, route_class: RouteClass) -> Bucket | None:
        for name, bucket in self.buckets:
            if name is route_class:
                return bucket
        return None

    @property
    def off(self) -> bool:
        return not self.buckets

    def __str__(self) -> str:
        """The ``PRESENCE_RATE_LIMITS`` form, which parses back to the same limits."""
        if self.off:
            return "off"
        return ",".join(f"{name}={self.get(name) or 'off'}" for name in RouteClass)


DEFAULT_RATE_LIMITS = RateLimits()

_RATE = re.compile(r"^(\d+(?:\.\d+)?)/(s|m|h)$")
_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}


def _bucket(spec: str) -> Bucket:
    rate_part, *options = spec.split(":")
    match = _RATE.match(rate_part.strip())
    if not match:
        raise ValueError(f"{rate_part!r} is not a rate like 20/s, 600/m or 1000/h")
    rate = float(match[1]) / _PER[match[2]]
    if not 0 < rate <= 100_000:
        raise ValueError(f"{rate_part!r}: the rate must be above 0 and at most 100000/s")
    burst = max(1, math.ceil(3 * rate))
    for option in options:
        name, _, value = option.strip().partition("=")
        if name != "burst" or not value.isdigit() or not 1 <= int(value) <= 1_000_000:
            raise ValueError(f"{option!r} is not burst=N with N within 1..1000000")
        burst = int(value)
    return Bucket(rate=rate, burst=burst)


def parse_rate_limits(raw: str) -> RateLimits:
    """``off``, or comma-separated ``class=RATE[:burst=N]`` (or ``class=off``) overriding
    the defaults of the classes named, e.g. ``heartbeat=20/s:burst=60,view=off``."""
    if raw.strip().lower() == "off":
        return RateLimits(buckets=())
    buckets: dict[RouteClass, Bucket | None] = dict(_DEFAULTS)
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        name, equals, spec = item.partition("=")
        try:
            route_class = RouteClass(name.strip())
        except ValueError as exc:
            classes = ", ".join(RouteClass)
            raise ValueError(f"{name.strip()!r} is not a route class ({classes})") from exc
        if not equals:
            raise ValueError(f"{item!r} is not class=RATE[:burst=N] or class=off")
        buckets[route_class] = None if spec.strip().lower() == "off" else _bucket(spec)
    return RateLimits(buckets=tuple((k, v) for k, v in buckets.items() if v is not None))
