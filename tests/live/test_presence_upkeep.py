"""Heartbeat upkeep: the sweep index and key TTLs are rewritten only when due, and no
presence key is ever left without a TTL that outlives the last heartbeat."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest
import redis

from presence_svc.errors import Conflict
from presence_svc.live.store import Counts, PresenceStore, pack_session_id
from presence_svc.redis.connection import RedisConnection
from presence_svc.redis.resp import pack_evalsha
from presence_svc.settings import Settings

pytestmark = pytest.mark.every_redis  # see tests/conftest.py


@pytest.fixture
def store(redis_conn: RedisConnection, settings: Settings) -> PresenceStore:
    return PresenceStore(redis_conn, settings)


def _calls(sync_redis: redis.Redis) -> dict[str, int]:
    stats = sync_redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def test_a_refresh_rewrites_neither_the_sweep_index_nor_the_ttls(
    store: PresenceStore, settings: Settings, sync_redis: redis.Redis
) -> None:
    slow = settings.replace(online_timeout_s=60.0, retention_s=120.0)
    store = PresenceStore(store.redis, slow)
    await store.heartbeat("doc-1", "tab-alice-01", "alice", "v1", b'{"p":1}')
    await store.heartbeat("doc-1", "tab-bob-0001", "bob", "v1", None)
    due = sync_redis.zscore(store.keys.due(store.keys.tag_of("doc-1")), "doc-1")
    sync_redis.config_resetstat()
    for _ in range(5):
        counts = await store.heartbeat("doc-1", "tab-alice-01", "alice", "", None)
        assert (counts.online, counts.sessions) == (2, 2)
    calls = _calls(sync_redis)
    assert calls["zadd"] == 5  # the session's own score, nothing else
    assert "pexpire" not in calls
    assert sync_redis.zscore(store.keys.due(store.keys.tag_of("doc-1")), "doc-1") == due


async def test_every_key_outlives_the_last_heartbeat_by_retention_and_timeout(
    store: PresenceStore, settings: Settings, sync_redis: redis.Redis
) -> None:
    floor_ms = settings.retention_ms + settings.online_timeout_ms

    async def beat(session: str, user: str) -> None:
        started = time.monotonic()
        await store.heartbeat("doc-1", session, user, "v1", None)
        keys = sync_redis.keys("ps:*")
        assert keys
        ttls = {key: sync_redis.pttl(key) for key in keys}
        elapsed_ms = (time.monotonic() - started) * 1000
        assert all(ttl >= floor_ms - elapsed_ms for ttl in ttls.values()), ttls

    await beat("tab-alice-01", "alice")  # a new artifact
    for _ in range(8):  # refreshes, most of which rewrite nothing but the score
        await asyncio.sleep(settings.online_timeout_s / 4)
        await beat("tab-alice-01", "alice")
    await store.leave("doc-1", "tab-alice-01", "alice")
    # the last session gone: no key left but the recently-here list (and its partition
    # index), which live PRESENCE_RECENT_S after the leave, and the timeline (and its
    # rollup index), which live PRESENCE_TIMELINE_DAYS
    k = store.keys.artifact("doc-1")
    kept = [k.recent, k.recent_due, k.timeline, k.timeline_index]
    assert sorted(sync_redis.keys("ps:*")) == sorted(key.encode() for key in kept)
    assert 0 < sync_redis.pttl(k.recent) <= settings.recent_ms
    assert 0 < sync_redis.pttl(k.timeline) <= settings.timeline_ms
    await beat("tab-alice-02", "alice")  # keys created again get their TTL
    await beat("tab-bob-0001", "bob")
    await store.leave("doc-1", "tab-alice-02", "alice", grace=True)
    await asyncio.sleep(settings.leave_grace_s + 0.1)
    await beat("tab-alice-02", "alice")  # back online after the grace ran out


def test_every_session_id_is_packed_into_nine_bytes() -> None:
    sdk = "0123456789abcdef0123456789abcdef"
    ids = [sdk, sdk.upper(), sdk[:31], "tab-alice-01", "x" * 64]
    # time-ordered ids that share their first half still get distinct packings
    ids += [f"0190f0a1-7b3c-7{n:03x}-8000-000000000000" for n in range(200)]
    packed = [pack_session_id(s) for s in ids]
    assert all(p[:1] == b"#" and len(p) == 9 for p in packed)
    assert len(set(packed)) == len(ids)
    # every API process behind the load balancer packs an id the same way
    other_process = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from presence_svc.live.store import pack_session_id as p; print(p({sdk!r}).hex())",
        ],
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert bytes.fromhex(other_process.stdout.strip()) == pack_session_id(sdk)


async def test_packed_and_plain_session_ids_count_as_the_sessions_they_are(
    store: PresenceStore, sync_redis: redis.Redis
) -> None:
    sdk = "9f86d081884c7d659a2feaa0c55ad015"
    assert await store.heartbeat("doc-1", sdk, "alice", "v1", None) == Counts(1, 1, 1, 0)
    assert await store.heartbeat("doc-1", sdk.upper(), "alice", "v1", None) == Counts(1, 2, 1, 0)
    assert await store.heartbeat("doc-1", "tab-bob-0001", "bob", "v1", None) == Counts(2, 3, 2, 0)
    with pytest.raises(Conflict):
        await store.heartbeat("doc-1", sdk, "bob", "v1", None)
    assert await store.leave("doc-1", sdk, "alice") == Counts(2, 2, 2, 0)
    assert await store.leave("doc-1", sdk.upper(), "alice") == Counts(1, 1, 1, 0)
    page = await store.page("doc-1", 10, None)
    assert [row.user_id for row in page.rows] == ["bob"]
    # two keys per small artifact (sessions, info) and the partition's sweep index; alice left,
    # so the artifact's recently-here list and its partition index too; and the partition's
    # counts hash (batch reads); the timeline's minutes are in the info hash (no key of its own)
    assert len(sync_redis.keys("ps:*")) == 6


@pytest.mark.parametrize(
    ("version", "state"), [("v1", b'{"page":3}'), (None, None), ("v\u00e9", b'{"n":"\xc3\xa9"}')]
)
def test_the_cached_heartbeat_head_packs_the_call_in_full(
    store: PresenceStore, settings: Settings, version: str | None, state: bytes | None
) -> None:
    """The hot path packs a per-artifact head once and appends the session's arguments:
    byte for byte the whole call, for a new and a cached head, and a store with other
    timeouts never gets another store's head."""
    other = PresenceStore(store.redis, settings.replace(online_timeout_s=7.0, retention_s=14.0))
    for artifact in ("doc-1", "doc-1", "d\u00f6c:2"):
        for each in (store, other, store):
            call = each.heartbeat_call(artifact, "tab-1", "alice", version, state)
            assert call.resp() == pack_evalsha(call.script.sha, call.keys, call.args)
