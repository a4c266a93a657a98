"""Per-user rate limits, checked after the token: one token bucket per user and route
class in Redis (``lua/limits/take.lua``, on the user's slot), shared by every process
and host. Admin tokens are never limited.

A user found over a limit is remembered here until its bucket has a token again, so a
flood from one client is refused without asking Redis each time (the bucket cannot
refill sooner: other processes can only take from it). When Redis answers the check
with an error that refuses writes only (out of memory, a replica, ...), the request
goes through: a limiter that fails open never stops a well-behaved user. When Redis
refuses every command (loading its data, a long script, a Cluster down) or is
unreachable, the request's own operation would fail the same way, so it is a 503 at once,
naming that cause: letting it through would only make it wait on Redis a second time
(a loading Redis answers once per loading step, so the second wait could outlast the
deadline and the 503 would say "timeout" instead of LOADING).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.exceptions import NoScriptError, ResponseError

from presence_svc import metrics
from presence_svc.errors import RateLimited
from presence_svc.principal import Principal, Scope
from presence_svc.ratelimits import Bucket, RateLimits, RouteClass
from presence_svc.redis.connection import RedisConnection
from presence_svc.redis.keys import Keyspace
from presence_svc.redis.refusal import refusal
from presence_svc.redis.scripts import ScriptCall

__all__ = ["Limiter"]

log = logging.getLogger(__name__)

_REMEMBERED = 65_536
"""Users (and their last answers) remembered per process; past it the memory starts over."""

_REFUSING_ALL = frozenset({"LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN"})
"""Refusal codes of a Redis that serves no command now, reads included: the request's own
operation would be refused too, so the limiter does not let it through."""

_LEASE_KEPT_S = 30.0
"""What a process remembers of a bucket at most (its spare tokens: ``Bucket.lease_kept_s``)."""

T = TypeVar("T")


@dataclass(slots=True)
class _Known:
    """What this process knows of one user's bucket for one route class."""

    left: float
    """Tokens the bucket held after the last answer, less those taken since."""
    at: float
    """When ``left`` was true (monotonic)."""
    spare: int = 0
    """Tokens taken from Redis and not spent yet: requests admitted without asking."""


class Limiter:
    def __init__(self, redis: RedisConnection, keys: Keyspace, limits: RateLimits) -> None:
        self._redis = redis
        self._script = redis.scripts.take_token
        self._keys = keys
        self._buckets = dict(limits.buckets)
        self._refused_until: dict[tuple[str, RouteClass], float] = {}
        self._known: dict[tuple[str, RouteClass], _Known] = {}
        self._taking: set[asyncio.Future[None]] = set()
        """Leases taken beside an operation, kept until they are answered."""

    async def check(self, principal: Principal, route_class: RouteClass) -> None:
        """Take one token of ``route_class`` for the caller, or raise ``RateLimited``."""
        await self.guard(principal, route_class, _nothing)

    def guard(
        self, principal: Principal, route_class: RouteClass, operation: Callable[[], Awaitable[T]]
    ) -> Awaitable[T]:
        """``operation()`` once the caller has a token of ``route_class`` (else
        ``RateLimited``, and ``operation`` never runs).

        Tokens come from Redis a lease at a time (``Bucket.lease``, only while the bucket
        stays at least half full), and the spare ones are spent here without asking. When
        none is spare but the last answer left at least half the burst, the next lease is
        taken in the same Redis pipeline as the operation instead of a round trip before
        it. So a user gets at most the limit, plus, per process, what others took from
        the bucket since its last answer (at most half a burst).

        Not a coroutine itself: the caller awaits ``operation()`` as it is whenever no
        round trip comes first (nearly always), one coroutine fewer per request; a refusal
        is raised at the call.
        """
        bucket = self._buckets.get(route_class)
        if bucket is None or principal.scope is Scope.ADMIN:
            return operation()
        key, now = (principal.user_id, route_class), time.monotonic()
        until = self._refused_until.get(key)
        if until is not None:
            if now < until:
                raise _refused(route_class, bucket, until - now)
            del self._refused_until[key]
        known = self._known.get(key)
        if known is not None and now - known.at > _LEASE_KEPT_S:
            del self._known[key]  # an old lease: dropped, and the bucket asked again
            known = None
        if known is not None and known.spare > 0:
            if now - known.at <= min(bucket.lease_kept_s, _LEASE_KEPT_S):
                known.spare -= 1
                return operation()
            known.spare = 0  # saved too long: spent now, they could pass the bound
        if known is None or _estimate(known, bucket, now) - bucket.lease < bucket.burst / 2:
            return self._taken_first(key, bucket, operation)
        known.left -= bucket.lease  # what the lease will take, until the answer says
        # Sent before the operation makes its call, so both join one pipeline (a future
        # and a callback, no task: this runs beside nearly every heartbeat). Admitted
        # already: its answer only tells the next requests (a refusal included).
        self._redis.submit(self._call(key, bucket)).add_done_callback(
            functools.partial(self._leased, key, bucket)
        )
        return operation()

    async def _taken_first(
        self, key: tuple[str, RouteClass], bucket: Bucket, operation: Callable[[], Awaitable[T]]
    ) -> T:
        """``operation()`` once a token is taken from Redis (or ``RateLimited``)."""
        await self._take(key, bucket, admitted=False)
        return await operation()

    def _call(self, key: tuple[str, RouteClass], bucket: Bucket) -> ScriptCall:
        user, route_class = key
        return self._script.call(
            self._keys.rate_bucket(user, route_class),
            bucket.interval_ms,
            bucket.burst,
            bucket.lease,
        )

    def _leased(
        self, key: tuple[str, RouteClass], bucket: Bucket, answer: asyncio.Future[Any]
    ) -> None:
        """The answer to a lease taken beside an operation (already admitted)."""
        if answer.cancelled():
            return
        exc = answer.exception()
        if exc is None:
            taken, left, wait_ms = answer.result()
            self._answered(key, bucket, taken, left, wait_ms, admitted=True)
        elif isinstance(exc, NoScriptError):  # Redis restarted: taken again, loading it
            taking = asyncio.ensure_future(self._take(key, bucket, admitted=True))
            self._taking.add(taking)
            taking.add_done_callback(self._took)
        elif isinstance(exc, ResponseError) and not _refusing_all(exc):
            _not_checked(exc)
        else:
            log.debug("rate limit lease not taken", extra={"error": repr(exc)})

    def _took(self, task: asyncio.Future[None]) -> None:
        self._taking.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("rate limit lease not taken", extra={"error": repr(task.exception())})

    async def _take(self, key: tuple[str, RouteClass], bucket: Bucket, *, admitted: bool) -> None:
        try:
            taken, left, wait_ms = await self._redis.run(self._call(key, bucket))
        except ResponseError as exc:
            refused = refusal(exc)
            if refused is not None and refused.cause.code in _REFUSING_ALL:
                raise refused from exc
            _not_checked(exc)
            return
        self._answered(key, bucket, taken, left, wait_ms, admitted=admitted)

    def _answered(
        self,
        key: tuple[str, RouteClass],
        bucket: Bucket,
        taken: int,
        left: int,
        wait_ms: int,
        *,
        admitted: bool,
    ) -> None:
        """Remember what Redis answered; a refusal of a request not yet admitted raises."""
        route_class = key[1]
        now = time.monotonic()
        if len(self._known) >= _REMEMBERED:
            self._known.clear()
        known = self._known.get(key)
        spare = (known.spare if known is not None else 0) + max(0, int(taken) - 1)
        self._known[key] = _Known(left=float(left), at=now, spare=spare)
        if taken:
            return
        wait_s = int(wait_ms) / 1000
        if len(self._refused_until) >= _REMEMBERED:
            self._refused_until.clear()
        self._refused_until[key] = now + wait_s
        if not admitted:
            raise _refused(route_class, bucket, wait_s)


async def _nothing() -> None:
    return None


def _refusing_all(exc: ResponseError) -> bool:
    refused = refusal(exc)
    return refused is not None and refused.cause.code in _REFUSING_ALL


def _not_checked(exc: ResponseError) -> None:
    """Redis refused the take with an error that refuses writes only: the request goes."""
    metrics.RATE_LIMITER_ERRORS.inc()
    log.warning("rate limit not checked: redis refused", extra={"error": str(exc)})


def _estimate(known: _Known, bucket: Bucket, now: float) -> float:
    """Tokens the bucket holds now, if no other process took any since the last answer."""
    return min(float(bucket.burst), known.left + (now - known.at) * bucket.rate)


def _refused(route_class: RouteClass, bucket: Bucket, wait_s: float) -> RateLimited:
    """The 429; its RateLimit fields as draft-ietf-httpapi-ratelimit-headers-10 writes them."""
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
