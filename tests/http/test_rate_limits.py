"""Per-user rate limits: token buckets in Redis, shared by every app on that Redis, a 429
with Retry-After and the RateLimit headers, admin tokens exempt, ``off``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
import redis

from presence_svc.ratelimits import RateLimits, RouteClass, parse_rate_limits
from presence_svc.redis.keys import Keyspace
from presence_svc.settings import ConfigError, Settings
from tests.conftest import AppClient, MakeClient

Auth = Callable[..., dict[str, str]]


def _beat(tab: int) -> dict[str, str]:
    return {"artifactId": "doc-1", "sessionId": f"tab-{tab:05d}"}


async def _statuses(
    client: AppClient, headers: dict[str, str], count: int, first: int = 0
) -> list[int]:
    """Heartbeats of tabs ``first`` .. ``first + count - 1``, one after another."""
    return [
        (await client.post("/v1/heartbeat", json=_beat(i), headers=headers)).status
        for i in range(first, first + count)
    ]


async def test_a_burst_beyond_the_limit_is_429_with_the_headers(
    make_client: MakeClient, auth: Auth
) -> None:
    client = await make_client(rate_limits=parse_rate_limits("heartbeat=2/s:burst=5"))
    alice = auth("alice")
    statuses = await _statuses(client, alice, 8)
    assert statuses[:5] == [200] * 5
    assert 429 in statuses[5:]
    response = await client.post("/v1/heartbeat", json=_beat(99), headers=alice)
    assert response.status == 429
    assert response.content_type == "application/problem+json"
    problem = await response.json()
    assert problem["type"] == "urn:presence-svc:problem:rate-limited"
    assert "heartbeat" in problem["detail"]
    assert response.headers["Retry-After"] == "1"  # a token every 0.5 s
    assert response.headers["RateLimit-Policy"] == '"heartbeat";q=5;w=3'
    assert response.headers["RateLimit"] == '"heartbeat";r=0;t=1'
    # Nothing of a refused heartbeat was written: tab 99 is not online.
    page = await (await client.get("/v1/artifacts/doc-1/presence", headers=alice)).json()
    assert page["sessions"] < 8
    # Other users and other route classes are not affected.
    assert (await client.post("/v1/heartbeat", json=_beat(1000), headers=auth("bob"))).status == 200
    assert (await client.get("/v1/artifacts/doc-1/online", headers=alice)).status == 200
    # After Retry-After, alice may send again.
    await asyncio.sleep(1.0)
    assert (await client.post("/v1/heartbeat", json=_beat(1), headers=alice)).status == 200


async def test_retry_after_is_when_a_token_is_back(make_client: MakeClient, auth: Auth) -> None:
    client = await make_client(rate_limits=parse_rate_limits("view=12/m:burst=1"))
    view = {"artifactId": "doc-1", "versionId": "v1"}
    assert (await client.post("/v1/views", json=view, headers=auth("alice"))).status == 200
    response = await client.post("/v1/views", json=view, headers=auth("alice"))
    assert response.status == 429
    assert response.headers["Retry-After"] in ("4", "5")  # one token every 5 s
    assert response.headers["RateLimit-Policy"] == '"view";q=1;w=5'
    # Refused again from this process's memory, with the time left, not a new 5 s.
    again = await client.post("/v1/views", json=view, headers=auth("alice"))
    assert again.status == 429
    assert int(again.headers["Retry-After"]) <= int(response.headers["Retry-After"])


async def test_two_apps_on_one_redis_share_the_bucket(make_client: MakeClient, auth: Auth) -> None:
    limits = parse_rate_limits("heartbeat=1/m:burst=6")
    first, second = await make_client(rate_limits=limits), await make_client(rate_limits=limits)
    alice = auth("alice")
    statuses = []
    for i in range(10):  # alternately, as a load balancer would spread them
        client = first if i % 2 == 0 else second
        statuses.append((await client.post("/v1/heartbeat", json=_beat(i), headers=alice)).status)
    assert statuses == [200] * 6 + [429] * 4


async def test_a_flood_through_two_apps_gets_no_more_than_the_burst(
    make_client: MakeClient, auth: Auth
) -> None:
    # A burst of 60: each app takes 15 tokens at a time while the bucket stays half full.
    limits = parse_rate_limits("heartbeat=1/m:burst=60")
    changes = {"rate_limits": limits, "online_timeout_s": 60.0, "retention_s": 120.0}
    apps = [await make_client(**changes), await make_client(**changes)]
    alice = auth("alice")
    admitted = 0
    for wave in range(3):  # concurrent waves, each app learning what the other took
        answers = await asyncio.gather(
            *(
                apps[i % 2].post("/v1/heartbeat", json=_beat(wave * 100 + i), headers=alice)
                for i in range(100)
            )
        )
        assert {r.status for r in answers} <= {200, 429}
        admitted += sum(r.status == 200 for r in answers)
    assert 30 <= admitted <= 60
    board = auth("board", scope="dashboard")
    page = await (await apps[0].get("/v1/artifacts/doc-1/presence", headers=board)).json()
    assert page["sessions"] == admitted  # a refused heartbeat wrote nothing


async def test_admin_tokens_are_not_limited(make_client: MakeClient, auth: Auth) -> None:
    client = await make_client(rate_limits=parse_rate_limits("heartbeat=1/m:burst=1"))
    assert await _statuses(client, auth("ops", scope="admin"), 20) == [200] * 20
    assert await _statuses(client, auth("alice"), 3, first=100) == [200, 429, 429]


async def test_off_disables_every_limit(make_client: MakeClient, auth: Auth) -> None:
    client = await make_client(rate_limits=parse_rate_limits("off"))
    assert await _statuses(client, auth("alice"), 100) == [200] * 100


async def test_defaults_let_a_dozen_tabs_through_and_stop_a_flood(
    make_client: MakeClient, auth: Auth
) -> None:
    client = await make_client(rate_limits=RateLimits())
    alice = auth("alice")
    assert await _statuses(client, alice, 12) == [200] * 12  # a dozen tabs open at once
    flood = await asyncio.gather(
        *(client.post("/v1/heartbeat", json=_beat(i), headers=alice) for i in range(300))
    )
    assert sum(r.status == 429 for r in flood) >= 150


async def _limiter_errors(client: AppClient) -> float:
    for line in (await (await client.get("/metrics")).text()).splitlines():
        if line.startswith("presence_rate_limiter_errors_total "):
            return float(line.split()[1])
    raise AssertionError("no presence_rate_limiter_errors_total in /metrics")


async def test_a_limiter_that_redis_refuses_lets_requests_through(
    make_client: MakeClient, auth: Auth, sync_redis: redis.Redis, settings: Settings
) -> None:
    client = await make_client(rate_limits=parse_rate_limits("heartbeat=1/m:burst=1"))
    bucket = Keyspace(settings.partitions).rate_bucket("alice", "heartbeat")
    sync_redis.hset(bucket, "not", "a string")  # the script's GET now answers WRONGTYPE
    before = await _limiter_errors(client)
    assert await _statuses(client, auth("alice"), 3) == [200, 200, 200]
    assert await _limiter_errors(client) == before + 3


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("heartbeat=0/s", "above 0"),
        ("heartbeat=fast", "not a rate"),
        ("heartbeat=5/x", "not a rate"),
        ("heartbeat=5/s:burst=0", "burst=N"),
        ("heartbeat=5/s:bust=9", "burst=N"),
        ("typing=5/s", "not a route class"),
        ("heartbeat", "class=RATE"),
    ],
)
def test_bad_rate_limits_stop_the_start(value: str, named: str) -> None:
    with pytest.raises(ConfigError, match="PRESENCE_RATE_LIMITS") as info:
        Settings.from_env({"PRESENCE_RATE_LIMITS": value})
    assert named in str(info.value)


def test_rate_limits_parse_and_print_back() -> None:
    limits = Settings.from_env({"PRESENCE_RATE_LIMITS": "view=off, heartbeat=600/m:burst=30"})
    assert str(limits.rate_limits) == "heartbeat=10/s:burst=30,view=off,read=50/s:burst=200"
    assert parse_rate_limits(str(limits.rate_limits)) == limits.rate_limits
    assert (
        str(Settings().rate_limits)
        == "heartbeat=20/s:burst=60,view=10/s:burst=50,read=50/s:burst=200"
    )
    assert Settings.from_env({"PRESENCE_RATE_LIMITS": "OFF"}).rate_limits.off


async def test_tokens_leased_one_by_one_cannot_be_saved_up_past_half_a_burst(
    make_client: MakeClient, auth: Auth, sync_redis: redis.Redis, settings: Settings
) -> None:
    """The documented bound: however a user's requests are spread over processes, a flood
    gets no more than the burst, plus half a burst, plus what refills meanwhile. Here a
    client visits each of six processes once, letting the bucket refill in between, so each
    holds a lease of spare tokens; then it floods them all at once."""
    limits = parse_rate_limits("heartbeat=20/s:burst=40")  # a lease is 10 tokens
    bucket = limits.get(RouteClass.HEARTBEAT)
    assert bucket is not None
    apps = [await make_client(rate_limits=limits) for _ in range(6)]
    alice = auth("alice")
    key = Keyspace(settings.partitions).rate_bucket("alice", "heartbeat")
    for i, app in enumerate(apps):
        assert (await app.post("/v1/heartbeat", json=_beat(i), headers=alice)).status == 200
        deadline = time.monotonic() + 10
        while sync_redis.exists(key):  # the key expires once the bucket is full again
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
    started = time.monotonic()
    flood = await asyncio.gather(
        *(
            apps[i % len(apps)].post("/v1/heartbeat", json=_beat(100 + i), headers=alice)
            for i in range(480)
        )
    )
    refilled = (time.monotonic() - started) * bucket.rate
    admitted = sum(r.status == 200 for r in flood)
    assert {r.status for r in flood} == {200, 429}
    # Slack of a quarter burst: a lease's hold counts from its answer, late on a busy
    # machine. Saved-up leases would add up to 6 x 9 = 54 here.
    assert admitted <= bucket.burst * 1.5 + refilled + bucket.burst / 4, (admitted, refilled)


@pytest.mark.every_redis
async def test_a_lease_taken_beside_a_heartbeat_counts_after_redis_forgot_its_scripts(
    make_client: MakeClient, auth: Auth, sync_redis: redis.Redis, settings: Settings
) -> None:
    """The lease taken in the heartbeat's pipeline (no round trip of its own) still reaches
    the bucket when Redis answers it NOSCRIPT (a restart, SCRIPT FLUSH): the limiter loads
    the script and takes it again, so the heartbeats it admitted are counted."""
    client = await make_client(rate_limits=parse_rate_limits("heartbeat=1/s:burst=40"))
    alice = auth("alice")
    key = Keyspace(settings.partitions).rate_bucket("alice", "heartbeat")
    # The first heartbeat asks Redis before it goes (a lease of 10: the bucket is full
    # again in 10 s); the next 9 spend the lease's spare tokens without asking.
    assert await _statuses(client, alice, 10) == [200] * 10
    first = sync_redis.pttl(key)
    assert 5_000 < first <= 10_000
    sync_redis.script_flush()
    # The 11th takes the next lease beside its own call, in one pipeline.
    assert await _statuses(client, alice, 1, first=10) == [200]
    deadline = time.monotonic() + 10
    while sync_redis.pttl(key) < first + 5_000:  # the second lease: 10 s more to refill
        assert time.monotonic() < deadline, sync_redis.pttl(key)
        await asyncio.sleep(0.02)
