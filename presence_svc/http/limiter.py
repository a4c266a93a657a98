"""Per-user rate limits, checked after the token: one token bucket per user and route
class in Redis (``lua/limits/settle.lua``, on the user's slot), shared by every process
and host. Admin tokens are never limited.

A request is admitted on what this process knows, with no Redis work on its path: the
bucket's last answer, the refill since, less what this process admitted since (GCRA, as in
Redis). What it admits is counted per user and class, and a background task settles it every
``PRESENCE_RATE_LIMIT_SETTLE_S`` (one script call per slot and route class, sent in writes
of ``_PER_WRITE`` buckets one after another), each answer saying what the buckets hold now.
A user this process has not heard of is taken to have a full bucket. Everything admitted is
charged, past empty too: the bucket goes into debt and every process refuses the user until
it is paid back. So one process keeps the limit exactly; across P processes a user gets at
most ``burst + rate * t + (P - 1) * (burst + rate * R + H)`` in any t seconds (R: a
settlement round, the interval plus a round trip; H: what a process may hold back, below),
the excess coming at the start of a flood, and the rate on average over a long one
(docs/api.md#rate-limits).

Held back: a bucket this process knows to be nearly full (at most ``H`` = a tenth of the
burst missing, and fewer than ``H`` requests admitted since its last settlement) is not
charged at the next round but ``PRESENCE_RATE_LIMIT_LAZY_S`` (to 2 s more) after the first
request held back, with the requests admitted since, all such buckets at once every
``_LAZY_ROUND_S``. A user far below the limit (a dozen tabs, one heartbeat each every 15 s)
is then charged once per H requests instead of at each: most of what Redis did per
request. What a process holds back is fewer than H requests however long it holds them,
so the time changes no bound. A bucket that leaves that state (a burst, or a settlement
saying others took from it) is charged at the next round, as before.

A settlement Redis refuses or does not answer is not retried (charged later, a long
outage would lock users out): the process counts it (``presence_rate_limiter_errors_total``)
and keeps limiting by itself. A Redis refusing every command (loading, a long script) is
a 503 naming the cause from the request's own operation, its only Redis call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from redis.exceptions import RedisError

from presence_svc import metrics
from presence_svc.errors import RateLimited
from presence_svc.principal import Principal, Scope
from presence_svc.ratelimits import Bucket, RateLimits, RouteClass
from presence_svc.redis.connection import RedisConnection
from presence_svc.redis.keys import Keyspace
from presence_svc.tasks import cancel_and_wait

__all__ = ["Limiter"]

log = logging.getLogger(__name__)

_REMEMBERED = 65_536
"""Buckets known per process; past it, the sweep forgets any with nothing to settle."""

_PER_WRITE = 32
"""Buckets settled by one script call, and sent to Redis in one write, at most; a round's
next write waits for the answers to the one before. Redis runs a write's calls back to
back (a GET and a SET each: ~5 us a bucket, up to ~13 with the AOF) and the requests'
calls written after it wait behind them: a round of 2 048 held charges sent at once held
every heartbeat ~10 ms, a steady round of ~200 some 1.5 ms every 0.1 s. In pieces, the
requests' calls run between them, and this process answers requests between them too. A
write of 64 held Redis 290-410 us (``benchmarks/limiter_hold.py``, Redis never
descheduled), the longest script call of the views and heartbeat benches; of 32, 145-240
us, for 7 % more Redis time a round (more calls)."""

_FORGET_AFTER_S = 60.0
"""The background sweep forgets a bucket full again only this long after it filled: a
user heartbeating every 15 s keeps theirs, where forgetting at once made one new bucket
(three objects the garbage collector tracks) per user every sweep, most of the young
generation's live objects at each of its passes (passes of 4-7 ms)."""

_SWEEP_S = 10.0
"""How often the buckets full again are forgotten (nothing this process knows of one
matters then: a user not heard of is taken to have a full bucket)."""

_LAST_SETTLE_S = 2.0
"""How long the settlement at shutdown may take."""

_LAZY_ROUND_S = 1.0
"""The buckets held back are queued by the second their first request came, and charged a
second's worth at once (one script call per slot and class a second, not one per round)."""

_RELEASED_PER_ROUND = 2048
"""Held back buckets charged by one round at most: users who all came at once (a restart,
a crowd arriving) come due at once too, and one round charging 10 000 buckets held the
pipeline ~1 s on a loaded machine; the rest wait for the next rounds."""


_ADMIN: Final = Scope.ADMIN
"""A module global: reading an enum member off its class costs ~0.3 µs on Python 3.11."""
_monotonic: Final = time.monotonic

T = TypeVar("T")
_Key = tuple[str, RouteClass]
_Call = tuple[str, RouteClass, int]
"""A settlement's script call: the slot's tag, the route class, and a count past
``_PER_WRITE`` buckets."""


@dataclass(slots=True)
class _Known:
    """What this process knows of one user's bucket for one route class, kept as GCRA
    keeps it: the time the bucket is full again, counting what this process admitted."""

    key: _Key
    """The user and route class (its key in ``Limiter._known``)."""
    full_at: float
    """Monotonic time the bucket is full again (past ``now + burst / rate``: a debt), by
    Redis's last answer and what this process admitted since."""
    used: int = 0
    """Requests admitted since the last settlement was sent."""
    since: float = 0.0
    """When the first of ``used`` was admitted (its place in the held-back queue)."""
    due: bool = False
    """Queued to be charged at the next round."""
    settling: int = 0
    """Requests admitted and sent to Redis, not answered yet."""
    bucket_key: str = ""
    """Its key in Redis, once settled."""
    bucket_bulk: bytes = b""
    """The key as a RESP bulk string (packed once, not at every settlement)."""
    slot: str = ""
    """Its hash tag (the user's partition), once settled."""

    def tokens(self, bucket: Bucket, now: float) -> float:
        """Tokens left for this process to admit now."""
        return bucket.burst - max(0.0, self.full_at - now) * bucket.rate


class Limiter:
    def __init__(
        self,
        redis: RedisConnection,
        keys: Keyspace,
        limits: RateLimits,
        settle_s: float = 0.1,
        lazy_s: float = 0.0,
    ) -> None:
        self._redis = redis
        self._script = redis.scripts.settle_tokens
        self._keys = keys
        self._buckets = dict(limits.buckets)
        self._admit_rules = {name: _rules(bucket, lazy_s > 0) for name, bucket in limits.buckets}
        """Per class: ``admit``'s arithmetic, worked out once."""
        self._settle_s = settle_s
        self._lazy_s = lazy_s
        self._known: dict[_Key, _Known] = {}
        self._places: dict[_Key, tuple[str, str, bytes]] = {}
        self._due: list[_Known] = []
        """Buckets to charge at the next round, in order."""
        self._held: deque[tuple[float, list[_Known]]] = deque()
        """Buckets held back, in lists by the lazy round (its start) in which their first
        request not charged came (an entry whose bucket was charged since, or forgotten,
        is skipped). The buckets themselves, never a new object per request: objects
        kept alive per request made the garbage collector run, ~0.35 µs a request."""
        self._holding: list[_Known] = []
        self._held.append((_monotonic(), self._holding))

    def admit(self, principal: Principal, route_class: RouteClass) -> None:
        """Count one request of ``route_class`` for the caller, or raise ``RateLimited``.
        A dict lookup and arithmetic: no Redis call, no future."""
        rules = self._admit_rules.get(route_class)
        if rules is None or principal.scope is _ADMIN:
            return
        most_ahead, step, held, held_ahead, bucket = rules
        key, now = (principal.user_id, route_class), _monotonic()
        known = self._known.get(key)
        if known is None:  # not heard of: a full bucket, until the first settlement
            known = self._known[key] = _Known(key, full_at=now)
        # A token left (``_Known.tokens`` >= 1): full again no more than (burst - 1) tokens
        # ahead.
        ahead = known.full_at - now
        if ahead > most_ahead:
            raise _refused(route_class, bucket, (1 - known.tokens(bucket, now)) / bucket.rate)
        known.full_at = full_at = (known.full_at if ahead > 0 else now) + step
        used = known.used = known.used + 1
        if known.due:
            return
        if used >= held or full_at - now > held_ahead:
            known.due = True  # not far below the limit: charged at the next round
            self._due.append(known)
        elif used == 1:
            known.since = now
            self._holding.append(known)

    async def check(self, principal: Principal, route_class: RouteClass) -> None:
        """``admit`` for the routes that await it."""
        self.admit(principal, route_class)

    def guard(
        self, principal: Principal, route_class: RouteClass, operation: Callable[[], Awaitable[T]]
    ) -> Awaitable[T]:
        """``operation()`` once the caller is admitted (else ``RateLimited``, and it never
        runs)."""
        self.admit(principal, route_class)
        return operation()

    @contextlib.asynccontextmanager
    async def settling(self) -> AsyncIterator[None]:
        """Settles in the background while open, and once more on the way out (what this
        process admitted last is charged before it stops)."""
        if not self._buckets:
            yield
            return
        task = asyncio.create_task(self._settle_forever(), name="rate-limit settlement")
        try:
            yield
        finally:
            await cancel_and_wait(task)  # for sure: a cancellation can be lost on 3.11
            try:  # a Redis that does not answer must not hold the shutdown
                async with asyncio.timeout(_LAST_SETTLE_S):
                    await self.settle()
            except TimeoutError:
                log.warning("rate limit: the last settlement got no answer; not charged")

    async def _settle_forever(self) -> None:
        swept = time.monotonic()
        while True:
            await asyncio.sleep(self._settle_s)
            now = time.monotonic()
            try:
                await self.settle_round(now)
            except Exception:  # a bug: logged, and the next round tries again
                log.exception("rate limit settlement failed")
            if now - swept >= _SWEEP_S or len(self._known) > _REMEMBERED:
                self.forget_idle(_FORGET_AFTER_S)
                swept = now

    async def settle_round(self, now: float) -> None:
        """One background round: the buckets due, and those held back long enough (a
        second's worth started by then, ``_RELEASED_PER_ROUND`` at most)."""
        if now - self._held[-1][0] >= _LAZY_ROUND_S:  # a new second's list of held back
            self._holding = []
            self._held.append((now, self._holding))
        await self.settle(held_since=now - self._lazy_s, held_at_most=_RELEASED_PER_ROUND)

    async def settle(
        self, held_since: float | None = math.inf, held_at_most: int = 1 << 62
    ) -> None:
        """Charge the buckets due with what was admitted since their last settlement, in
        writes of ``_PER_WRITE`` buckets one after another, and take in what Redis
        answered. Due: those queued for
        the next round, and those held back since ``held_since`` or before, up to
        ``held_at_most`` of them (by default, all: every request admitted is charged;
        None: none held back)."""
        if held_since is not None:
            self._release_held(held_since, held_at_most)
        pieces = _pieces(self._due_by_call())
        sent = 0
        try:
            for piece in pieces:
                sent += 1
                # a bucket forgotten since the round began (``forget_user``: an erasure)
                # is not written back; what a write already sent reaches Redis first
                kept = self._still_known(piece)
                if kept:
                    await self._charge(kept)
        finally:  # cancelled between writes: the rest is charged by the next settlement
            for piece in pieces[sent:]:
                for settled in piece.values():
                    for known in settled:
                        self._requeue(known)

    def _still_known(self, piece: dict[_Call, list[_Known]]) -> dict[_Call, list[_Known]]:
        kept: dict[_Call, list[_Known]] = {}
        for call, settled in piece.items():
            live = []
            for known in settled:
                if self._known.get(known.key) is known:
                    live.append(known)
                else:
                    known.settling = 0
            if live:
                kept[call] = live
        return kept

    def _requeue(self, known: _Known) -> None:
        """A bucket whose write was never sent: due again, with what it was to charge."""
        known.used, known.settling = known.used + known.settling, 0
        if known.used and not known.due and self._known.get(known.key) is known:
            known.due = True
            self._due.append(known)

    async def _charge(self, groups: dict[_Call, list[_Known]]) -> None:
        """One write of script calls (``_PER_WRITE`` buckets at most), and their answers
        taken in."""
        calls = []
        script = self._script
        for (_, route_class, _), settled in groups.items():
            bucket = self._buckets[route_class]
            calls.append(
                script.call_packed(
                    [known.bucket_key for known in settled],
                    b"".join([known.bucket_bulk for known in settled]),
                    bucket.interval_ms,
                    bucket.burst,
                    [known.settling for known in settled],
                )
            )
        try:
            answers = await self._redis.run_many(calls)
        except (RedisError, OSError, TimeoutError) as exc:
            answers = [exc] * len(calls)
        except asyncio.CancelledError:  # sent or not, unknown: taken as not charged
            for settled in groups.values():
                for known in settled:
                    known.settling = 0
            raise
        self._answered(groups, answers)

    def _release_held(self, since: float, budget: int) -> None:
        """Queue up to ``budget`` buckets held back since ``since`` or before for this round
        (those of every second that ended by then: a second after ``since`` keeps
        waiting), oldest first."""
        held, due = self._held, self._due
        while len(held) > 1 and held[1][0] <= since and budget > 0:
            start, queued = held.popleft()
            if len(queued) > budget:
                held.appendleft((start, queued[budget:]))
                queued = queued[:budget]
            budget -= len(queued)
            for known in queued:
                if known.used and not known.due and known.since <= since:
                    known.due = True
                    due.append(known)
        if since == math.inf:  # everything: the lazy round under way too
            for known in held[0][1]:
                if known.used and not known.due:
                    known.due = True
                    due.append(known)
            held[0][1].clear()

    def _due_by_call(self) -> dict[_Call, list[_Known]]:
        """The buckets with requests to charge, their ``settling`` set, grouped by the
        script call that charges them: one per slot (a partition's users) and class, of at
        most ``_PER_WRITE`` buckets."""
        due, self._due = self._due, []
        by_slot: dict[tuple[str, RouteClass], list[_Known]] = {}
        for known in due:
            if not known.used:  # charged already, or forgotten (``forget_user``)
                continue
            known.settling, known.used, known.due = known.used, 0, False
            if not known.slot:
                known.slot, known.bucket_key, known.bucket_bulk = self._place(known.key)
            group = by_slot.get((known.slot, known.key[1]))
            if group is None:
                by_slot[known.slot, known.key[1]] = [known]
            else:
                group.append(known)
        groups: dict[_Call, list[_Known]] = {}
        for (slot, route_class), settled in by_slot.items():
            for n, first in enumerate(range(0, len(settled), _PER_WRITE)):
                groups[slot, route_class, n] = settled[first : first + _PER_WRITE]
        return groups

    def _place(self, key: _Key) -> tuple[str, str, bytes]:
        """The bucket's slot, key and packed key, kept beyond ``forget_idle`` (a user
        heartbeating every 15 s is forgotten between two heartbeats, and would have them
        worked out again each time)."""
        place = self._places.get(key)
        if place is None:
            if len(self._places) >= _REMEMBERED:
                self._places.clear()
            user, route_class = key
            bucket_key = self._keys.rate_bucket(user, route_class)
            place = (self._keys.tag_of(user), bucket_key, self._script.packed_key(bucket_key))
            self._places[key] = place
        return place

    def _answered(self, groups: dict[_Call, list[_Known]], answers: list[Any]) -> None:
        now, failed, error = time.monotonic(), 0, None
        for ((_, route_class, _), settled), answer in zip(groups.items(), answers, strict=True):
            bucket = self._buckets[route_class]
            for i, known in enumerate(settled):
                known.settling = 0
                if isinstance(answer, BaseException):
                    continue  # not charged: this process limits on what it knows alone
                # What Redis holds now, less what was admitted here since the batch left.
                left = int(answer[i]) / 1000
                known.full_at = now + (bucket.burst - left + known.used) / bucket.rate
            if isinstance(answer, BaseException):
                failed, error = failed + len(settled), answer
        if failed:
            metrics.RATE_LIMITER_ERRORS.inc(failed)
            log.warning("rate limits not settled with redis", extra={"error": repr(error)})

    @property
    def remembered(self) -> int:
        """Buckets this process knows something of."""
        return len(self._known)

    def forget_user(self, user_id: str) -> None:
        """Drop what this process knows of the user and has not sent to Redis yet: before
        an erasure, so no settlement writes the user's bucket back after the erasure
        removed it (one already sent reaches Redis before the erasure does)."""
        for route_class in self._buckets:
            known = self._known.pop((user_id, route_class), None)
            if known is not None:  # still queued, perhaps: nothing left to charge
                known.used = 0
            self._places.pop((user_id, route_class), None)

    def forget_idle(self, after_s: float = 0.0) -> int:
        """Drop the buckets full again (for ``after_s`` at least) with nothing to settle (a
        user not heard of is taken to have a full bucket anyway); past ``_REMEMBERED``,
        any with nothing to settle (such a user is then admitted as by a process that never
        heard of them, within the same bound). Returns how many are left."""
        known, full_by = self._known, time.monotonic() - after_s
        for key in [
            k for k, v in known.items() if not (v.used or v.settling) and v.full_at <= full_by
        ]:
            del known[key]
        if len(known) > _REMEMBERED:
            for key in [k for k, v in known.items() if not (v.used or v.settling)]:
                del known[key]
        return len(known)


_Rules = tuple[float, float, int, float, Bucket]
"""What ``admit`` works out once per class (a tuple: unpacked in one step): how far ahead
``full_at`` may lie for a token to be left ((burst - 1) tokens, s); what one token adds to
it (s); how many requests a bucket may have admitted before it is charged at the next
round (H; 1: none held back); how far ahead ``full_at`` may lie for the bucket to be held
back (H tokens, s); the bucket."""


def _rules(bucket: Bucket, lazy: bool) -> _Rules:
    step = 1 / bucket.rate
    held = max(1, bucket.burst // 10) if lazy else 1
    return ((bucket.burst - 1) * step, step, held, held * step, bucket)


def _pieces(groups: dict[_Call, list[_Known]]) -> list[dict[_Call, list[_Known]]]:
    """``groups`` in writes of ``_PER_WRITE`` buckets at most (each call is at most that)."""
    pieces: list[dict[_Call, list[_Known]]] = []
    piece: dict[_Call, list[_Known]] = {}
    size = 0
    for call, settled in groups.items():
        if size + len(settled) > _PER_WRITE and piece:
            pieces.append(piece)
            piece, size = {}, 0
        piece[call] = settled
        size += len(settled)
    if piece:
        pieces.append(piece)
    return pieces


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
