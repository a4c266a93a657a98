"""Store many live sessions quickly: the real heartbeat script, pipelined.

Used by ``presence-svc bench --preload`` (heartbeat speed with a million sessions stored)
and by ``benchmarks/memory.py`` (bytes per stored session). Session i belongs to user i
and sits on artifact ``i mod artifacts``, the same ids the scenarios use, so a benchmark's
heartbeats land on artifacts that already hold preloaded sessions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import msgspec
from redis import Redis

from presence_svc.bench.scenarios import artifact_id, session_id, user_id
from presence_svc.live.store import PresenceStore
from presence_svc.redis.connection import RedisClient, connect
from presence_svc.redis.keys import Keyspace
from presence_svc.redis.scripts import ScriptCall
from presence_svc.settings import Settings
from presence_svc.timeline.records import hour_record
from presence_svc.timeline.series import Counts

__all__ = ["preload_sessions", "preload_timeline", "redis_build"]

_STATE = b'{"page":1,"mode":"view"}'


def redis_build(url: str) -> tuple[str, str]:
    """The Redis version and allocator at ``url``: both move the figures measured on it."""
    with Redis.from_url(url, socket_timeout=2) as client:
        version = client.info("server")["redis_version"]
        allocator = client.info("memory")["mem_allocator"]
    return str(version), str(allocator)


async def _settled(client: RedisClient, wait_s: float = 120.0) -> None:
    """Until Redis has finished the AOF rewrite a big preload sets off: a forked child
    writing hundreds of MB would otherwise compete with the measurement for the cores."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        info = await client.info("persistence")
        busy = ("aof_rewrite_in_progress", "aof_rewrite_scheduled", "rdb_bgsave_in_progress")
        if not any(int(info.get(name, 0)) for name in busy):
            return
        await asyncio.sleep(0.2)


async def preload_sessions(
    settings: Settings,
    sessions: int,
    artifacts: int,
    *,
    first: int = 0,
    batch: int = 2000,
    lanes: int = 4,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Heartbeat sessions ``first .. first+sessions-1``; returns how many were stored.

    ``lanes`` pipelines are in flight at once so Redis never waits for Python.
    """
    redis = connect(settings)
    store = PresenceStore(redis, settings)
    stored = 0
    cursor = first
    end = first + sessions

    def calls() -> list[ScriptCall] | None:
        nonlocal cursor
        if cursor >= end:
            return None
        chunk = range(cursor, min(end, cursor + batch))
        cursor = chunk.stop
        return [
            store.heartbeat_call(
                artifact_id(i % artifacts), session_id(i), user_id(i), "v1", _STATE
            )
            for i in chunk
        ]

    async def lane() -> None:
        nonlocal stored
        while (pending := calls()) is not None:
            for result in await redis.run_many(pending):
                if isinstance(result, Exception):
                    raise result
            stored += len(pending)
            if progress is not None:
                progress(stored)

    try:
        await redis.load_scripts()
        await asyncio.gather(*(lane() for _ in range(lanes)))
        await _settled(redis.client)
    finally:
        await redis.aclose()
    return stored


def preload_timeline(settings: Settings, artifacts: int, minutes: int) -> int:
    """Give artifacts ``0 .. artifacts-1`` a timeline with a change in each of the last
    ``minutes`` minutes, as Redis keeps it once the worker has rolled the hours that ended
    up (a record per hour, lua/live/timeline_done.lua) and the current hour's minutes
    (lib/timeline.lua): the largest a timeline gets, for the ``timeline`` scenario.
    Returns the minutes written."""
    keys = Keyspace(settings.partitions)
    now_minute = int(time.time() * 1000) // 60_000
    first = now_minute - minutes + 1
    current_hour = now_minute // 60
    with Redis.from_url(settings.redis_url or "", socket_timeout=30) as client:
        for n in range(artifacts):
            k = keys.artifact(artifact_id(n))
            fields: dict[str | int, bytes | int] = {}
            hours: dict[int, tuple[list[int], list[int], Counts]] = {}
            users = 5
            for minute in range(first, now_minute + 1):
                before = users
                users = 5 + (minute * 7 + n) % 40
                peak = max(before, users)
                if minute // 60 < current_hour:
                    online, sessions, _ = hours.setdefault(minute // 60, ([], [], Counts(0, 0)))
                    online.append(peak)
                    sessions.append(peak + 2)
                    hours[minute // 60] = (online, sessions, Counts(users, users + 2))
                else:
                    record = (peak, peak + 2, users, users + 2, before, before + 2)
                    fields[minute] = msgspec.msgpack.encode(record)
            for hour, (online, sessions, last) in hours.items():
                pad = 60 - len(online)  # the first hour, partly before `first`
                online[:0], sessions[:0] = [5] * pad, [7] * pad
                fields[f"h{hour}"] = hour_record(last, online, sessions)
            fields["~"] = now_minute
            pipe = client.pipeline(transaction=False)
            pipe.delete(k.timeline)
            pipe.hset(k.timeline, mapping=fields)
            pipe.pexpire(k.timeline, settings.timeline_ms or 86_400_000)
            pipe.zadd(k.timeline_index, {k.artifact_id: current_hour})
            pipe.execute()
    return artifacts * minutes
