"""A single server records a view in one script call (lua/stats/view.lua); a Cluster in
two, note_view.lua and record_view.lua. Here both run on one server: the same views leave
the same state (counts, viewers, hidden viewers, the recent list, the erasure index, the
webhook events, the ledger's stream entries) and answer the same. The Cluster itself:
tests/redis/test_cluster.py."""

from __future__ import annotations

import asyncio

import pytest
import redis

from presence_svc.redis.connection import RedisConnection
from presence_svc.settings import Settings
from presence_svc.stats.views import ViewStore
from tests.stats.view_paths import record_all, state

pytestmark = pytest.mark.every_redis  # a script whose keys span two slots: on 7 as on 6.2


async def test_one_call_and_two_scripts_leave_the_same_state(
    redis_conn: RedisConnection, settings: Settings, sync_redis: redis.Redis
) -> None:
    long_window = settings.replace(view_debounce_s=600.0)  # repeats stay inside it
    one_call = ViewStore(redis_conn, long_window)
    two_scripts = ViewStore(redis_conn, long_window.replace(redis_cluster=True))
    sync_redis.config_resetstat()
    answers = await record_all(redis_conn, one_call)
    calls = sync_redis.info("commandstats")["cmdstat_evalsha"]["calls"]
    assert calls == 1 + len(answers)  # set_latest, then one call per view
    after_one_call = state(sync_redis, one_call.keys)
    sync_redis.flushall()
    assert await record_all(redis_conn, two_scripts) == answers
    assert state(sync_redis, two_scripts.keys) == after_one_call

    counted = [a[3] for a in answers]
    assert counted == [True, False, True, True, True, False, True]
    assert answers[-1][4:] == (3, 3)  # doc-1/v1: alice, bob (hidden), carol
    assert after_one_call["outbox " + one_call.keys.tag_of("doc-1")]  # version.seen


@pytest.mark.parametrize("cluster", [False, True], ids=["one-call", "two-scripts"])
async def test_two_versions_viewed_in_one_millisecond_show_the_later_in_the_recent_list(
    redis_conn: RedisConnection, settings: Settings, cluster: bool
) -> None:
    store = ViewStore(redis_conn, settings.replace(redis_cluster=cluster))
    for attempt in range(50):  # until Redis's clock shows both calls in one millisecond
        artifact = f"doc-{attempt}"
        first, second = await asyncio.gather(
            store.record(artifact, "v1", "alice", None), store.record(artifact, "v2", "alice", None)
        )
        if first.viewed_at_ms == second.viewed_at_ms:
            break
    else:
        pytest.fail("no two views in one millisecond in 50 tries")
    recent = {item.artifact_id: item.version_id for item in await store.recent("alice", 100)}
    assert recent[artifact] == "v2"
