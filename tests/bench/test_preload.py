"""The preload behind ``bench --preload`` and ``benchmarks/memory.py`` adapts to a slow
machine: a batch that does not come back in time is sent again in smaller batches, then
with a longer timeout, so the tools never die because the machine is slow."""

from __future__ import annotations

import logging

import pytest
import redis

from presence_svc.bench.preload import preload_sessions
from presence_svc.bench.scenarios import artifact_id
from presence_svc.live.store import PresenceStore
from presence_svc.redis.connection import RedisConnection
from presence_svc.settings import Settings


async def test_a_preload_far_too_big_for_its_timeout_slows_down_and_stores_every_session(
    settings: Settings,
    redis_conn: RedisConnection,
    sync_redis: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = settings.replace(online_timeout_s=600.0, retention_s=3600.0)
    with caplog.at_level(logging.INFO, logger="presence_svc.bench.preload"):
        # One batch of all 4 000 heartbeats within 5 ms: no machine does that.
        stored = await preload_sessions(settings, 4_000, 50, batch=4_000, timeout_s=0.005)
    assert stored == 4_000
    assert any("going slower" in r.getMessage() for r in caplog.records)
    keys = PresenceStore(redis_conn, settings).keys
    held = sum(sync_redis.zcard(keys.artifact(artifact_id(a)).sessions) for a in range(50))
    assert held == 4_000
