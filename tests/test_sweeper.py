"""The sweeper: stale sessions leave the counts, old ones are deleted, nothing is left over."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import redis
from redis.asyncio import Redis

from presence_svc.presence import PresenceStore
from presence_svc.scripts import Scripts
from presence_svc.settings import Settings
from presence_svc.worker.sweeper import Sweeper, owner_of

Auth = Callable[..., dict[str, str]]


@pytest.fixture
async def scripts(settings: Settings) -> AsyncIterator[Scripts]:
    client = Redis.from_url(settings.redis_url or "")
    yield Scripts(client)
    await client.aclose()


async def test_sweeps_leave_no_key_behind_after_retention(
    scripts: Scripts, settings: Settings, sync_redis: redis.Redis
) -> None:
    store = PresenceStore(scripts, settings)
    for artifact in ("doc-1", "doc-2", "doc-3"):
        for user in ("alice", "bob"):
            await store.heartbeat(artifact, f"tab-{user}-0001", user, "v1", b'{"a":1}')
    assert sync_redis.dbsize() > 0
    sweeper = Sweeper(scripts, settings)
    await asyncio.sleep(settings.online_timeout_s + 0.1)
    first = await sweeper.sweep_once()
    assert first.artifacts == 3
    assert first.sessions_deleted == 0  # timed out, not yet past retention
    assert (await store.online(["doc-1"]))["doc-1"].online == 0
    await asyncio.sleep(settings.retention_s - settings.online_timeout_s)
    second = await sweeper.sweep_once()
    assert second.sessions_deleted == 6
    await sweeper.release()
    assert sync_redis.keys("*") == []


async def test_a_sweep_visits_only_what_is_due(
    scripts: Scripts, settings: Settings, sync_redis: redis.Redis
) -> None:
    store = PresenceStore(scripts, settings)
    await store.heartbeat("stale-doc", "tab-old-00001", "old", None, None)
    await asyncio.sleep(settings.online_timeout_s + 0.1)
    for i in range(200):
        await store.heartbeat(f"fresh-{i}", "tab-new-00001", f"user-{i}", None, None)
    result = await Sweeper(scripts, settings).sweep_once(list(store.keys.tags))
    assert result.artifacts == 1


async def test_workers_split_the_partitions_and_take_over_from_a_dead_one(
    scripts: Scripts, settings: Settings
) -> None:
    one, two = Sweeper(scripts, settings), Sweeper(scripts, settings)
    mine, theirs = await one.claim(), await two.claim()
    mine = await one.claim()
    assert set(mine).isdisjoint(theirs)
    assert set(mine) | set(theirs) == set(one.keys.tags)
    assert mine
    assert theirs
    # `two` dies without a word: after its lease lapses `one` holds everything
    await asyncio.sleep(two.lease_ms / 1000 + 0.1)
    assert set(await one.claim()) == set(one.keys.tags)
    # a clean exit hands over at once
    await two.claim()
    await two.release()
    assert set(await one.claim()) == set(one.keys.tags)


def test_rendezvous_moves_only_the_leaving_workers_partitions() -> None:
    tags = [f"t{i}" for i in range(64)]
    three = {t: owner_of(t, ["a", "b", "c"]) for t in tags}
    two = {t: owner_of(t, ["a", "b"]) for t in tags}
    assert all(two[t] == three[t] for t in tags if three[t] != "c")
    assert owner_of("t1", []) is None
