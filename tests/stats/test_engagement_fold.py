"""Deferred crediting of engaged time against the real Redis: a report only adds to its
session's accumulator; the viewer is credited at a leave, a version change, a report once
the fold is due, or by the worker's fold for a session that stopped reporting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest
import redis

from presence_svc.http.resources import REDIS, SETTINGS
from presence_svc.redis.keys import Keyspace
from presence_svc.settings import ConfigError, Settings
from presence_svc.stats.engagement import SLACK_MS
from presence_svc.stats.engagement_fold import EngagementFold
from tests.conftest import AppClient, MakeClient
from tests.stats.test_engaged_report_cost import accumulators
from tests.stats.test_engagement import SESSION, Auth, beat, stats, view, viewers

LONG = dict(online_timeout_s=30.0, heartbeat_interval_s=10.0, retention_s=60.0, read_after_s=3.0)


async def _until(check: Callable[[], Awaitable[bool]], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def leave(client: AppClient, auth: Auth, user: str, **body: Any) -> None:
    payload = {"artifactId": "doc-1", "sessionId": SESSION, **body}
    response = await client.post("/v1/leave", json=payload, headers=auth(user))
    assert response.status == 200, await response.text()


def _older_versions_accumulator(sync_redis: redis.Redis, keys: Keyspace, due_in_ms: int) -> str:
    """SESSION's accumulator on doc-1 as versions before the session records kept it (a
    hash per artifact), holding 1 500 ms of v1, its fold due in ``due_in_ms``; the hash."""
    tag = keys.tag_of("doc-1")
    reports, sid = keys.engage_reports(tag, "doc-1"), b"#" + _digest(SESSION)
    due = int(time.time() * 1000) + due_in_ms
    sync_redis.hset(
        reports, sid, msgspec.msgpack.encode([due - due_in_ms - 5_000, 1_500, due, "v1"])
    )
    sync_redis.zadd(keys.engage_folds(tag), {sid + b"doc-1": due})
    return reports


@pytest.mark.every_redis
async def test_reports_wait_in_the_accumulator_and_a_leave_credits_them_clamped(
    make_client: MakeClient, auth: Auth, sync_redis: redis.Redis, settings: Settings
) -> None:
    client = await make_client(**LONG)  # the default fold: 60 s
    await view(client, auth, "alice")
    started = time.monotonic()
    assert await beat(client, auth, "alice", versionId="v1") == 200
    for _ in range(3):
        assert await beat(client, auth, "alice", 600_000, versionId="v1") == 200
    assert await viewers(client, auth) == {"alice": 0}  # not credited yet
    keys = Keyspace(settings.partitions)
    tag = keys.tag_of("doc-1")
    assert sync_redis.zcard(keys.engage_folds(tag)) == 1  # due for the worker's fold
    assert sync_redis.zcard(keys.engage_dirty(tag)) == 0  # nothing for the database yet
    await leave(client, auth, "alice")  # no engagedMs: the leave credits what is held
    elapsed_ms = (time.monotonic() - started) * 1000
    credited = (await viewers(client, auth))["alice"]
    # three reports, each at most the time since the one before plus the slack
    assert 0 < credited <= elapsed_ms + 3 * SLACK_MS + 50
    assert (await stats(client, auth))["engagedMs"] == credited
    assert sync_redis.zcard(keys.engage_folds(tag)) == 0
    assert accumulators(sync_redis, keys, "doc-1") == {}
    assert sync_redis.zcard(keys.engage_dirty(tag)) == 1


async def test_a_version_change_credits_the_version_the_time_was_spent_on(
    make_client: MakeClient, auth: Auth
) -> None:
    client = await make_client(**LONG)
    await view(client, auth, "alice", "v1")
    await view(client, auth, "alice", "v2")
    await beat(client, auth, "alice", versionId="v1")
    for _ in range(2):
        assert await beat(client, auth, "alice", 1_500, versionId="v1") == 200
    assert await beat(client, auth, "alice", 700, versionId="v2") == 200
    assert await viewers(client, auth, "v1") == {"alice": 3_000}
    assert await viewers(client, auth, "v2") == {"alice": 0}  # held until its own fold
    assert await beat(client, auth, "alice", 300) == 200  # no versionId: the session's, v2
    await leave(client, auth, "alice", engagedMs=1_000)  # the beacon's time too
    assert await viewers(client, auth, "v2") == {"alice": 2_000}
    by_version = {v["versionId"]: v for v in (await stats(client, auth))["versions"]}
    assert (by_version["v1"]["engagedMs"], by_version["v1"]["readers"]) == (3_000, 1)
    assert (by_version["v2"]["engagedMs"], by_version["v2"]["readers"]) == (2_000, 0)


@pytest.mark.every_redis
async def test_a_report_once_the_fold_is_due_credits_and_readers_count_once(
    make_client: MakeClient, auth: Auth
) -> None:
    client = await make_client(**{**LONG, "engagement_fold_s": 0.3})
    await view(client, auth, "alice")
    await beat(client, auth, "alice", versionId="v1")
    sent = 0

    async def credited() -> bool:
        nonlocal sent
        assert await beat(client, auth, "alice", 1_000, versionId="v1") == 200
        sent += 1_000
        return (await viewers(client, auth))["alice"] > 0

    await _until(credited)
    await _until(credited)
    await leave(client, auth, "alice")
    assert (await viewers(client, auth))["alice"] == sent  # 1 s reports, all within the clamp
    version = (await stats(client, auth))["versions"][0]
    assert (version["engagedMs"], version["readers"]) == (sent, 1 if sent >= 3_000 else 0)


async def test_the_worker_folds_a_session_that_stopped_reporting(
    make_client: MakeClient, auth: Auth, sync_redis: redis.Redis, settings: Settings
) -> None:
    client = await make_client(**{**LONG, "engagement_fold_s": 0.3})
    await view(client, auth, "alice")
    await view(client, auth, "bob")
    await beat(client, auth, "alice", versionId="v1")
    await beat(client, auth, "bob", versionId="v1", sessionId="tab-bob-1")
    assert await beat(client, auth, "alice", 1_200, versionId="v1") == 200
    assert await beat(client, auth, "bob", 800, versionId="v1", sessionId="tab-bob-1") == 200
    # bob's tab closes without a beacon: its session ends; alice's stays online, quiet
    sync_redis.hdel(
        Keyspace(settings.partitions).artifact("doc-1").info, b"#" + _digest("tab-bob-1")
    )
    app = client.server.app
    fold = EngagementFold(app[REDIS], app[SETTINGS])
    keys = Keyspace(settings.partitions)
    folds = keys.engage_folds(keys.tag_of("doc-1"))
    folded = 0

    async def done() -> bool:  # both due (each within 0.3 s, by its session id)
        nonlocal folded
        folded += await fold.fold_once()
        return sync_redis.zcard(folds) == 0

    await _until(done)
    assert folded == 1  # alice's; bob's session is gone: his time is dropped
    assert await viewers(client, auth) == {"alice": 1_200, "bob": 0}
    assert await fold.fold_once() == 0  # once only
    # alice's accumulator stays (emptied) as her next report's clamp; bob's is gone
    ((_, (_, pending, _, version)),) = accumulators(sync_redis, keys, "doc-1").items()
    assert (pending, version) == (0, "v1")


async def test_another_users_report_on_the_session_adds_nothing(
    make_client: MakeClient, auth: Auth
) -> None:
    client = await make_client(**LONG)
    await view(client, auth, "alice")
    await view(client, auth, "mallory")
    await beat(client, auth, "alice", versionId="v1")
    assert await beat(client, auth, "alice", 1_000, versionId="v1") == 200
    assert await beat(client, auth, "mallory", 25_000, versionId="v1") == 409
    await leave(client, auth, "alice")
    assert await viewers(client, auth) == {"alice": 1_000, "mallory": 0}


@pytest.mark.parametrize("value", ["-1", "601", "x"])
def test_a_bad_fold_interval_is_refused_by_name(value: str) -> None:
    with pytest.raises(ConfigError, match="PRESENCE_ENGAGEMENT_FOLD_S"):
        Settings.from_env({"PRESENCE_ENGAGEMENT_FOLD_S": value})


def _digest(session_id: str) -> bytes:
    from hashlib import blake2b

    return blake2b(session_id.encode(), digest_size=8).digest()


async def test_an_accumulator_an_older_version_kept_in_its_hash_is_credited_by_the_fold(
    make_client: MakeClient, auth: Auth, sync_redis: redis.Redis, settings: Settings
) -> None:
    """An upgrade finds accumulators where older versions kept them (a hash per artifact,
    before they moved into the session records): the worker's fold credits what one holds
    when its session's fold comes due, and deletes it; a report meanwhile starts the
    session's accumulator in its record, credited as well."""
    client = await make_client(**{**LONG, "engagement_fold_s": 0.3})
    app = client.server.app
    fold = EngagementFold(app[REDIS], app[SETTINGS])
    await view(client, auth, "alice")
    assert await beat(client, auth, "alice", versionId="v1") == 200
    keys = Keyspace(settings.partitions)
    tag = keys.tag_of("doc-1")
    reports = _older_versions_accumulator(sync_redis, keys, due_in_ms=0)
    assert await beat(client, auth, "alice", 400, versionId="v1") == 200
    credited = 0

    async def done() -> bool:
        nonlocal credited
        credited += await fold.fold_once()
        return sync_redis.zcard(keys.engage_folds(tag)) == 0

    await _until(done)
    assert await viewers(client, auth) == {"alice": 1_900}
    assert sync_redis.exists(reports) == 0


@pytest.mark.parametrize("reports_first", [False, True], ids=["leaves", "reports-then-leaves"])
async def test_an_accumulator_an_older_version_kept_is_credited_when_its_session_leaves(
    make_client: MakeClient,
    auth: Auth,
    sync_redis: redis.Redis,
    settings: Settings,
    reports_first: bool,
) -> None:
    """A session from before the upgrade that leaves before its fold is due (straight
    away, or after one report that starts its accumulator in its record): the time an
    older version held for it in its own hash is credited, not lost with the record."""
    client = await make_client(**LONG)
    await view(client, auth, "alice")
    assert await beat(client, auth, "alice", versionId="v1") == 200
    reports = _older_versions_accumulator(sync_redis, Keyspace(settings.partitions), 60_000)
    if reports_first:
        assert await beat(client, auth, "alice", 400, versionId="v1") == 200
    await leave(client, auth, "alice")
    assert await viewers(client, auth) == {"alice": 1_500 + (400 if reports_first else 0)}
    assert sync_redis.exists(reports) == 0


async def test_time_held_after_the_workers_fold_of_a_quiet_session_outlives_the_hash_ttl(
    make_client: MakeClient, auth: Auth
) -> None:
    """A session online but quiet (a hidden tab: plain heartbeats) is folded by the worker
    and its accumulator kept; reports then resume and are held until its next fold, an
    interval after the worker's. The accumulators' hash must live that long: with short
    timeouts (its lifetime is the away plus the online timeout plus the interval) it
    expired before, and the time held in it was lost."""
    short = dict(online_timeout_s=1.5, away_timeout_s=1.5, heartbeat_interval_s=0.5)
    client = await make_client(**short, retention_s=30.0, engagement_fold_s=4.0)
    app = client.server.app
    fold = EngagementFold(app[REDIS], app[SETTINGS])
    await view(client, auth, "alice")
    assert await beat(client, auth, "alice", versionId="v1") == 200
    assert await beat(client, auth, "alice", 300, versionId="v1") == 200  # the hash's TTL set
    reported = time.monotonic()
    sent = 300
    # quiet (plain heartbeats) until the worker folds it, 3.5 s on at least
    while time.monotonic() < reported + 3.5 or not await fold.fold_once():
        assert await beat(client, auth, "alice", versionId="v1") == 200
        assert time.monotonic() < reported + 30, "never folded"
        await asyncio.sleep(0.2)
    assert await viewers(client, auth) == {"alice": 300}
    # reports again, past the hash's lifetime (7 s from its last TTL) and short of the next
    # fold (4 s after the worker's): held in the accumulator
    while time.monotonic() < reported + 7.3:
        assert await beat(client, auth, "alice", 300, versionId="v1") == 200
        sent += 300
        await asyncio.sleep(0.2)
    await leave(client, auth, "alice")
    assert await viewers(client, auth) == {"alice": sent}
