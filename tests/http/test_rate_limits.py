"""Per-user rate limits: token buckets in Redis, shared by every app on that Redis, a 429
with Retry-After and the RateLimit headers, admin tokens exempt, ``off``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
import redis

from presence_svc.auth import TokenCodec
from presence_svc.http.limiter import Limiter
from presence_svc.http.resources import LIMITER
from presence_svc.ratelimits import RateLimits, parse_rate_limits
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


def _limiter(client: AppClient) -> Limiter:
    return client.server.app[LIMITER]


@pytest.mark.every_redis
async def test_two_apps_on_one_redis_share_the_bucket(make_client: MakeClient, auth: Auth) -> None:
    """A process admits on what it knows; its settlement tells it what the others took."""
    changes = {
        "rate_limits": parse_rate_limits("heartbeat=1/m:burst=6"),
        "rate_limit_settle_s": 5,
        "online_timeout_s": 60.0,
        "retention_s": 120.0,
    }
    first, second = await make_client(**changes), await make_client(**changes)
    alice = auth("alice")
    assert await _statuses(first, alice, 7) == [200] * 6 + [429]
    await _limiter(first).settle()
    # A process that never heard of alice takes her bucket to be full until it settles:
    # the documented allowance (at most a burst), charged to her bucket all the same.
    assert await _statuses(second, alice, 2, first=10) == [200, 200]
    await _limiter(second).settle()  # answered: 6 + 2 taken, a debt of 2
    refused = await second.post("/v1/heartbeat", json=_beat(20), headers=alice)
    assert refused.status == 429
    assert 150 < int(refused.headers["Retry-After"]) <= 180  # the debt, then one token
    assert (await first.post("/v1/heartbeat", json=_beat(21), headers=alice)).status == 429
    board = auth("board", scope="dashboard")
    page = await (await first.get("/v1/artifacts/doc-1/presence", headers=board)).json()
    assert page["sessions"] == 8  # a refused heartbeat wrote nothing


@pytest.mark.every_redis
async def test_a_flood_through_two_apps_gets_no_more_than_the_bound(
    make_client: MakeClient, auth: Auth
) -> None:
    """The documented bound: across P processes, a burst + (P - 1) x a burst at most (no
    refill at 1/m), the excess at the start of a flood, then nothing once every process
    has heard of the debt."""
    limits = parse_rate_limits("heartbeat=1/m:burst=60")
    changes = {
        "rate_limits": limits,
        "rate_limit_settle_s": 5,
        "online_timeout_s": 60.0,
        "retention_s": 120.0,
    }
    apps = [await make_client(**changes), await make_client(**changes)]
    alice = auth("alice")
    waves = []
    for wave in range(3):  # concurrent waves, the apps settling in between
        answers = await asyncio.gather(
            *(
                apps[i % 2].post("/v1/heartbeat", json=_beat(wave * 100 + i), headers=alice)
                for i in range(100)
            )
        )
        assert {r.status for r in answers} <= {200, 429}
        waves.append(sum(r.status == 200 for r in answers))
        for app in apps:
            await _limiter(app).settle()
    # Each app spends the full bucket it takes alice's to be: 50 each. The first to settle
    # hears of 10 left (the other's 50 not charged yet) and spends them in the next wave;
    # the other hears of the debt. Once both have, nothing more.
    assert waves[0] == 100
    assert waves[1] <= 10
    assert waves[2] == 0
    admitted = sum(waves)
    assert admitted <= 60 + 60
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


async def test_a_settlement_that_redis_refuses_fails_no_request(
    make_client: MakeClient, auth: Auth, sync_redis: redis.Redis, settings: Settings
) -> None:
    """Redis answers the settlement with an error: counted, and the process keeps limiting
    by itself on what it knows (no request fails for it)."""
    changes = {"rate_limits": parse_rate_limits("heartbeat=1/s:burst=5"), "rate_limit_settle_s": 5}
    client = await make_client(**changes)
    bucket = Keyspace(settings.partitions).rate_bucket("alice", "heartbeat")
    sync_redis.hset(bucket, "not", "a string")  # the script's GET now answers WRONGTYPE
    before = await _limiter_errors(client)
    alice = auth("alice")
    assert await _statuses(client, alice, 5) == [200] * 5
    await _limiter(client).settle()
    assert await _limiter_errors(client) == before + 1
    assert await _statuses(client, alice, 1, first=5) == [429]  # still limited here
    deadline = time.monotonic() + 10
    while (status := (await _statuses(client, alice, 1, first=6))[0]) == 429:
        assert time.monotonic() < deadline  # a token back within 1 s
        await asyncio.sleep(0.05)
    assert status == 200


async def test_idle_users_are_forgotten_and_debtors_are_not(
    make_client: MakeClient, auth: Auth
) -> None:
    """Memory follows the active users: a bucket full again is
    forgotten (a user not heard of is taken to have a full bucket anyway), by the
    background sweep a minute later; one still empty is kept."""
    limits = parse_rate_limits("heartbeat=1000/s:burst=2,view=1/m:burst=1")
    client = await make_client(rate_limits=limits, rate_limit_settle_s=5)
    limiter = _limiter(client)
    for i, user in enumerate(("alice", "bob", "carol")):
        assert await _statuses(client, auth(user), 1, first=i) == [200]
    view = {"artifactId": "doc-1", "versionId": "v1"}
    assert (await client.post("/v1/views", json=view, headers=auth("dave"))).status == 200
    await limiter.settle()
    assert limiter.remembered == 4
    # the background sweep's grace: a user heartbeating every 15 s keeps the bucket
    await asyncio.sleep(0.05)
    assert limiter.forget_idle(after_s=60) == 4
    deadline = time.monotonic() + 10
    while limiter.forget_idle() > 1:  # the heartbeat buckets are full again within 2 ms
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    assert limiter.remembered == 1
    assert (await client.post("/v1/views", json=view, headers=auth("dave"))).status == 429


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


@pytest.mark.parametrize("value", ["0", "0.001", "6", "often"])
def test_a_bad_settle_interval_stops_the_start(value: str) -> None:
    with pytest.raises(ConfigError, match="PRESENCE_RATE_LIMIT_SETTLE_S"):
        Settings.from_env({"PRESENCE_RATE_LIMIT_SETTLE_S": value})


def test_the_settle_interval_is_read() -> None:
    assert Settings().rate_limit_settle_s == 0.1
    assert Settings.from_env({"PRESENCE_RATE_LIMIT_SETTLE_S": "0.25"}).rate_limit_settle_s == 0.25


def test_rate_limits_parse_and_print_back() -> None:
    limits = Settings.from_env({"PRESENCE_RATE_LIMITS": "view=off, heartbeat=600/m:burst=30"})
    assert (
        str(limits.rate_limits)
        == "heartbeat=10/s:burst=30,view=off,read=50/s:burst=200,admin=20/s:burst=300"
    )
    assert parse_rate_limits(str(limits.rate_limits)) == limits.rate_limits
    assert (
        str(Settings().rate_limits)
        == "heartbeat=20/s:burst=60,view=10/s:burst=50,read=50/s:burst=200,admin=20/s:burst=300"
    )
    assert Settings.from_env({"PRESENCE_RATE_LIMITS": "OFF"}).rate_limits.off


@pytest.mark.every_redis
async def test_a_settlement_counts_after_redis_forgot_its_scripts(
    make_client: MakeClient, auth: Auth, sync_redis: redis.Redis, settings: Settings
) -> None:
    """The settlement still reaches the bucket when Redis answers it NOSCRIPT (a restart,
    SCRIPT FLUSH): the script is loaded and the call sent again, so the heartbeats admitted
    are counted."""
    changes = {"rate_limits": parse_rate_limits("heartbeat=1/s:burst=40"), "rate_limit_settle_s": 5}
    client = await make_client(**changes)
    alice = auth("alice")
    key = Keyspace(settings.partitions).rate_bucket("alice", "heartbeat")
    assert await _statuses(client, alice, 10) == [200] * 10
    await _limiter(client).settle()
    first = sync_redis.pttl(key)
    assert 5_000 < first <= 10_000  # 10 taken: the bucket is full again in 10 s
    sync_redis.script_flush()
    assert await _statuses(client, alice, 10, first=10) == [200] * 10
    await _limiter(client).settle()
    assert sync_redis.pttl(key) > first + 5_000  # 10 more: 10 s more to refill


async def test_a_settlement_of_many_users_charges_each(
    make_client: MakeClient, tokens: TokenCodec, sync_redis: redis.Redis
) -> None:
    """300 users on one slot (one partition): settled in calls of at most 256 buckets, each
    bucket charged with its own requests."""
    limits = parse_rate_limits("view=1/m:burst=5")
    client = await make_client(rate_limits=limits, rate_limit_settle_s=5, partitions=1)
    users = [f"user-{i:03d}" for i in range(300)]
    for i, user in enumerate(users):
        headers = {"Authorization": f"Bearer {tokens.issue(user)}"}
        for n in range(1 + i % 2):  # one view, or two
            view = {"artifactId": "doc-1", "versionId": f"v{n}"}
            assert (await client.post("/v1/views", json=view, headers=headers)).status == 200
    await _limiter(client).settle()
    keys = Keyspace(1)
    for i, user in enumerate(users):
        taken = 1 + i % 2  # each token takes 60 s to come back
        assert (
            (taken - 1) * 60_000 < sync_redis.pttl(keys.rate_bucket(user, "view")) <= taken * 60_000
        )


async def test_an_erasure_leaves_no_bucket_of_the_user_behind(
    make_client: MakeClient, auth: Auth, sync_redis: redis.Redis
) -> None:
    """Her heartbeats just before the erasure were admitted and not settled yet: settled
    after it, they would write her bucket (a key named after her) back."""
    limits = parse_rate_limits("heartbeat=1/s:burst=60")  # 3 requests: a bucket kept 3 s
    client = await make_client(rate_limits=limits, rate_limit_settle_s=0.5)
    assert (await _statuses(client, auth("alice-erased"), 3)) == [200] * 3
    assert (await _statuses(client, auth("bob"), 3, first=100)) == [200] * 3
    deleted = await client.delete("/v1/users/alice-erased", headers=auth("ops", scope="admin"))
    assert deleted.status == 204
    # A settlement after the erasure (as the background one every 0.5 s, which a loaded
    # machine can hold back past any fixed sleep).
    await _limiter(client).settle()
    buckets = [k.decode() for k in sync_redis.scan_iter(match="rl:*")]
    assert [k for k in buckets if "bob" in k]  # the settlement ran
    assert not [k for k in buckets if "alice-erased" in k], buckets
