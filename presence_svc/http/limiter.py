"""Per-user rate limits, checked after the token: one token bucket per user and route
class in Redis (``lua/limits/take.lua``, on the user's slot), shared by every process
and host. Admin tokens are never limited.

A user found over a limit is remembered here until its bucket has a token again, so a
flood from one client is refused without asking Redis each time (the bucket cannot
refill sooner: other processes can only take from it). When Redis answers the check
with an error (out of memory, a replica, ...), the request goes through: a limiter
that fails open never stops a well-behaved user. When Redis is unreachable, the
request's own operation would fail the same way, so it is a 503 at once.
"""

from __future__ import annotations

import logging
import math
import time

from redis.exceptions import ResponseError

from presence_svc import metrics
from presence_svc.errors import RateLimited
from presence_svc.principal import Principal, Scope
from presence_svc.ratelimits import Bucket, RateLimits, RouteClass
from presence_svc.redis.connection import RedisConnection
from presence_svc.redis.keys import Keyspace

__all__ = ["DRAFT", "Limiter"]

log = logging.getLogger(__name__)

DRAFT = "draft-ietf-httpapi-ratelimit-headers-10"
"""The version of the RateLimit header fields' draft these headers follow."""

_REMEMBERED = 65_536
"""Users over a limit remembered per process; past it the memory starts over."""


class Limiter:
    def __init__(self, redis: RedisConnection, keys: Keyspace, limits: RateLimits) -> None:
        self._redis = redis
        self._script = redis.scripts.take_token
        self._keys = keys
        self._limits = limits
        self._refused_until: dict[tuple[str, RouteClass], float] = {}

    async def check(self, principal: Principal, route_class: RouteClass) -> None:
        """Take one token of ``route_class`` for the caller, or raise ``RateLimited``."""
        bucket = self._limits.get(route_class)
        if bucket is None or principal.scope is Scope.ADMIN:
            return
        user = principal.user_id
        now = time.monotonic()
        until = self._refused_until.get((user, route_class))
        if until is not None:
            if now < until:
                raise _refused(route_class, bucket, until - now)
            del self._refused_until[(user, route_class)]
        call = self._script.call(
            self._keys.rate_bucket(user, route_class), bucket.interval_ms, bucket.burst
        )
        try:
            taken, _, wait_ms = await self._redis.run(call)
        except ResponseError as exc:
            metrics.RATE_LIMITER_ERRORS.inc()
            log.warning("rate limit not checked: redis refused", extra={"error": str(exc)})
            return
        if taken:
            return
        wait_s = int(wait_ms) / 1000
        if len(self._refused_until) >= _REMEMBERED:
            self._refused_until.clear()
        self._refused_until[(user, route_class)] = now + wait_s
        raise _refused(route_class, bucket, wait_s)


def _refused(route_class: RouteClass, bucket: Bucket, wait_s: float) -> RateLimited:
    retry_after = max(1, math.ceil(wait_s))
    return RateLimited(
        f"too many {route_class} requests for this user: at most {bucket.burst} at once, "
        f"then {bucket.rate:g} a second; retry in {retry_after} s",
        headers={
            "Retry-After": str(retry_after),
            "RateLimit-Policy": f'"{route_class}";q={bucket.burst};w={bucket.window_s}',
            "RateLimit": f'"{route_class}";r=0;t={retry_after}',
        },
    )
