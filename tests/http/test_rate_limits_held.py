"""Charges held back (``PRESENCE_RATE_LIMIT_LAZY_S``): a bucket a process knows to be
nearly full is charged within that time with everything admitted meanwhile, not at every
settlement; one that leaves that state is charged at the next round (real Redis, real
HTTP)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import redis

from presence_svc.http.limiter import Limiter
from presence_svc.http.resources import LIMITER
from presence_svc.principal import Principal, Scope
from presence_svc.ratelimits import HEARTBEAT, parse_rate_limits
from presence_svc.redis.keys import Keyspace
from presence_svc.redis.scripts import ScriptCall
from presence_svc.settings import ConfigError, Settings
from tests.conftest import AppClient, MakeClient

Auth = Callable[..., dict[str, str]]

LIMITS = parse_rate_limits("heartbeat=1/s:burst=60")
"""A token a second: a bucket's time to live in Redis says how many were charged. Held
back: a tenth of the burst, 6."""


async def _beats(client: AppClient, headers: dict[str, str], count: int, first: int) -> list[int]:
    statuses = []
    for tab in range(first, first + count):
        body = {"artifactId": "doc-1", "sessionId": f"tab-{tab:05d}"}
        statuses.append((await client.post("/v1/heartbeat", json=body, headers=headers)).status)
    return statuses


def _limiter(client: AppClient) -> Limiter:
    return client.server.app[LIMITER]


async def test_a_user_far_below_the_limit_is_charged_once_for_several_requests(
    make_client: MakeClient, auth: Auth, sync_redis: redis.Redis, settings: Settings
) -> None:
    # The background task settles once a minute: the test settles by hand, as it would.
    client = await make_client(rate_limits=LIMITS, rate_limit_settle_s=5, rate_limit_lazy_s=60)
    limiter, alice = _limiter(client), auth("alice")
    bucket = Keyspace(settings.partitions).rate_bucket("alice", "heartbeat")
    assert await _beats(client, alice, 5, first=0) == [200] * 5
    await limiter.settle(held_since=None)  # a round: nothing of alice's is due yet
    assert sync_redis.pttl(bucket) == -2  # no key: nothing charged
    # The sixth request since her last charge is one too many to hold back.
    assert await _beats(client, alice, 1, first=5) == [200]
    await limiter.settle(held_since=None)
    assert 5_000 < sync_redis.pttl(bucket) <= 6_000  # all six charged, a second each
    # Six tokens short now: no longer nearly full, so the next is charged at the next round.
    assert await _beats(client, alice, 1, first=6) == [200]
    await limiter.settle(held_since=None)
    assert 6_000 < sync_redis.pttl(bucket) <= 7_000
    # A settlement of everything (as at shutdown) charges what was held back too.
    bob = Keyspace(settings.partitions).rate_bucket("bob", "heartbeat")
    assert await _beats(client, auth("bob"), 2, first=10) == [200] * 2
    await limiter.settle(held_since=None)
    assert sync_redis.pttl(bob) == -2
    await limiter.settle()
    assert 1_000 < sync_redis.pttl(bob) <= 2_000


async def test_held_back_charges_reach_redis_within_the_lazy_time(
    make_client: MakeClient, auth: Auth, sync_redis: redis.Redis, settings: Settings
) -> None:
    client = await make_client(rate_limits=LIMITS, rate_limit_settle_s=0.05, rate_limit_lazy_s=0.2)
    bucket = Keyspace(settings.partitions).rate_bucket("bob", "heartbeat")
    assert await _beats(client, auth("bob"), 3, first=0) == [200] * 3
    deadline = time.monotonic() + 20  # a loaded machine holds the background task back
    while (ttl := sync_redis.pttl(bucket)) == -2:
        assert time.monotonic() < deadline, "the held back charge never reached Redis"
        await asyncio.sleep(0.05)
    assert ttl <= 3_000  # three charged at once


async def test_a_bucket_others_took_from_is_charged_at_the_next_round(
    make_client: MakeClient, auth: Auth, sync_redis: redis.Redis, settings: Settings
) -> None:
    """Once a settlement says the bucket is not nearly full (another process spent from
    it), this process holds nothing back for that user."""
    changes = {"rate_limits": LIMITS, "rate_limit_settle_s": 5, "rate_limit_lazy_s": 60}
    first, second = await make_client(**changes), await make_client(**changes)
    alice = auth("alice")
    bucket = Keyspace(settings.partitions).rate_bucket("alice", "heartbeat")
    assert await _beats(first, alice, 20, first=0) == [200] * 20
    await _limiter(first).settle(held_since=None)  # a burst: charged at the next round
    assert 19_000 < sync_redis.pttl(bucket) <= 20_000
    assert await _beats(second, alice, 1, first=100) == [200]
    await _limiter(second).settle(held_since=None)  # held back: it knows nothing of alice
    assert 18_000 < sync_redis.pttl(bucket) <= 20_000
    await _limiter(second).settle()  # charged (21), and told of the 20 the first took
    assert await _beats(second, alice, 1, first=101) == [200]
    await _limiter(second).settle(held_since=None)  # not nearly full: no longer held
    assert 20_000 < sync_redis.pttl(bucket) <= 22_000


async def test_lazy_zero_charges_at_every_round(
    make_client: MakeClient, auth: Auth, sync_redis: redis.Redis, settings: Settings
) -> None:
    client = await make_client(rate_limits=LIMITS, rate_limit_settle_s=5, rate_limit_lazy_s=0)
    bucket = Keyspace(settings.partitions).rate_bucket("carol", "heartbeat")
    assert await _beats(client, auth("carol"), 1, first=0) == [200]
    await _limiter(client).settle(held_since=None)
    assert 0 < sync_redis.pttl(bucket) <= 1_000


async def test_an_erasure_drops_what_was_held_back(
    make_client: MakeClient, auth: Auth, sync_redis: redis.Redis
) -> None:
    client = await make_client(rate_limits=LIMITS, rate_limit_settle_s=5, rate_limit_lazy_s=60)
    assert await _beats(client, auth("dora-erased"), 2, first=0) == [200] * 2
    deleted = await client.delete("/v1/users/dora-erased", headers=auth("ops", scope="admin"))
    assert deleted.status == 204
    await _limiter(client).settle()  # everything held back: none of hers is left to charge
    assert not [k for k in sync_redis.scan_iter(match="rl:*") if b"dora-erased" in k]


@pytest.mark.parametrize("value", ["-1", "61", "soon"])
def test_a_bad_lazy_time_stops_the_start(value: str) -> None:
    with pytest.raises(ConfigError, match="PRESENCE_RATE_LIMIT_LAZY_S"):
        Settings.from_env({"PRESENCE_RATE_LIMIT_LAZY_S": value})


def test_the_lazy_time_is_read() -> None:
    assert Settings().rate_limit_lazy_s == 30.0
    assert Settings.from_env({"PRESENCE_RATE_LIMIT_LAZY_S": "0"}).rate_limit_lazy_s == 0.0


async def test_users_held_back_together_are_charged_over_several_rounds(
    make_client: MakeClient, sync_redis: redis.Redis
) -> None:
    """3 000 users who came in the same second (a restart, a crowd) come due together:
    charged 2 048 a round at most, so one round does not hold the pipeline, and all of
    them in the end."""
    slow = parse_rate_limits("heartbeat=1/m:burst=60")  # a charge's key lives 60 s
    client = await make_client(rate_limits=slow, rate_limit_settle_s=5, rate_limit_lazy_s=60)
    limiter = _limiter(client)
    for n in range(3000):
        limiter.admit(Principal(f"crowd-{n:04d}", Scope.CLIENT, None), HEARTBEAT)
    start = time.monotonic()

    def charged() -> int:
        return sum(1 for _ in sync_redis.scan_iter(match="rl:*", count=1000))

    await limiter.settle_round(start + 1.5)  # a new second begins; nothing held 60 s yet
    assert charged() == 0
    await limiter.settle_round(start + 62)  # the first second's users are due
    assert charged() == 2048
    await limiter.settle_round(start + 62.1)
    assert charged() == 3000


async def test_a_round_is_sent_in_pieces_one_after_the_other(
    make_client: MakeClient, sync_redis: redis.Redis
) -> None:
    """300 users of one slot due together: every one charged, in writes of at most 32
    buckets, the next written once the one before is answered (so the requests' own calls
    run between them, not behind a round's worth of charges)."""
    slow = parse_rate_limits("heartbeat=1/m:burst=60")
    client = await make_client(
        rate_limits=slow, rate_limit_settle_s=5, rate_limit_lazy_s=0, partitions=1
    )
    limiter = _limiter(client)
    redis_connection = limiter._redis
    run_many = redis_connection.run_many
    writes: list[int] = []
    flying = 0

    async def spied(calls: Sequence[ScriptCall]) -> list[Any]:
        nonlocal flying
        assert flying == 0, "a piece was written before the one before was answered"
        flying += 1
        writes.append(len(calls))
        try:
            return await run_many(calls)
        finally:
            flying -= 1

    redis_connection.run_many = spied  # type: ignore[method-assign]
    for n in range(300):
        limiter.admit(Principal(f"crowd-{n:04d}", Scope.CLIENT, None), HEARTBEAT)
    await limiter.settle(held_since=None)
    assert writes == [1] * 10  # one slot: a call of 32 buckets per write, the last of 12
    assert sum(1 for _ in sync_redis.scan_iter(match="rl:*", count=1000)) == 300
    for key in sync_redis.scan_iter(match="rl:*", count=1000):
        assert 57_000 < sync_redis.pttl(key) <= 60_000  # one heartbeat each: a minute's token


async def _round_between_writes(
    make_client: MakeClient, between: Callable[[Limiter], Any]
) -> Limiter:
    """300 users of one slot admitted, a round started, and ``between`` run once its first
    write is answered and before the next is written."""
    client = await make_client(
        rate_limits=parse_rate_limits("heartbeat=1/m:burst=60"),
        rate_limit_settle_s=5,
        rate_limit_lazy_s=0,
        partitions=1,
    )
    limiter = _limiter(client)
    run_many = limiter._redis.run_many
    writes = 0

    async def spied(calls: Sequence[ScriptCall]) -> list[Any]:
        nonlocal writes
        answers = await run_many(calls)
        writes += 1
        if writes == 1:
            await between(limiter)
        return answers

    limiter._redis.run_many = spied  # type: ignore[method-assign]
    for n in range(300):
        limiter.admit(Principal(f"crowd-{n:04d}", Scope.CLIENT, None), HEARTBEAT)
    return limiter


async def test_a_user_erased_during_a_round_is_not_written_back_by_its_later_writes(
    make_client: MakeClient, sync_redis: redis.Redis
) -> None:
    victim = "crowd-0299"  # the last admitted: in the round's last write
    bucket = Keyspace(1).rate_bucket(victim, HEARTBEAT)

    async def erase(limiter: Limiter) -> None:
        limiter.forget_user(victim)  # what DELETE /v1/users/{id} does first
        sync_redis.delete(bucket)  # then the eraser

    limiter = await _round_between_writes(make_client, erase)
    await limiter.settle(held_since=None)
    assert sync_redis.exists(bucket) == 0
    assert sum(1 for _ in sync_redis.scan_iter(match="rl:*", count=1000)) == 299


async def test_a_round_cancelled_between_writes_is_charged_by_the_last_settlement(
    make_client: MakeClient, sync_redis: redis.Redis
) -> None:
    """As a shutdown cancels the background round: what it had not written yet is charged
    by the settlement on the way out, not lost."""
    cancelled = asyncio.Event()

    async def cancel_round(_: Limiter) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        cancelled.set()
        await asyncio.sleep(0)  # the cancellation lands here: the first write was answered

    limiter = await _round_between_writes(make_client, cancel_round)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(limiter.settle(held_since=None))
    assert cancelled.is_set()
    assert sum(1 for _ in sync_redis.scan_iter(match="rl:*", count=1000)) < 300
    await limiter.settle()  # the last settlement
    assert sum(1 for _ in sync_redis.scan_iter(match="rl:*", count=1000)) == 300
