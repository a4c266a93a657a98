"""Store many live sessions quickly: the real heartbeat script, pipelined.

Used by ``presence-svc bench --preload`` (heartbeat speed with a million sessions stored)
and by ``benchmarks/memory.py`` (bytes per stored session). Session i belongs to user i
and sits on artifact ``i mod artifacts``, the same ids the scenarios use, so a benchmark's
heartbeats land on artifacts that already hold preloaded sessions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import msgspec
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from presence_svc.bench.scenarios import artifact_id, session_id, user_id
from presence_svc.live.store import PresenceStore
from presence_svc.redis.connection import RedisClient, RedisConnection, connect
from presence_svc.redis.facts import allocator_name
from presence_svc.redis.keys import Keyspace
from presence_svc.redis.scripts import ScriptCall
from presence_svc.settings import Settings
from presence_svc.timeline.records import hour_record
from presence_svc.timeline.series import Counts

__all__ = ["preload_sessions", "preload_timeline", "redis_build"]

log = logging.getLogger(__name__)

_STATE = b'{"page":1,"mode":"view"}'


def redis_build(url: str) -> tuple[str, str]:
    """The Redis version and allocator at ``url``: both move the figures measured on it
    (``libc+jemalloc``: a libc build with jemalloc preloaded, ``facts.allocator_name``)."""
    with Redis.from_url(url, socket_timeout=2) as client:
        server = client.info("server")
        allocator = str(client.info("memory")["mem_allocator"])
    return str(server["redis_version"]), allocator_name(allocator, int(server["process_id"]), url)


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


_BULK_TIMEOUT_S = 30.0
"""The preload's own socket timeout: its pipelines hold thousands of calls, so the
service's ``PRESENCE_REDIS_TIMEOUT_S`` (0.9 s, for one request's call) does not apply."""
_MAX_TIMEOUT_S = 600.0
_MIN_BATCH = 50


class _Pace:
    """The batch size and timeout, adapted to the machine: a batch that timed out is sent
    again in halves (a heartbeat stored twice is stored once), and once batches are as
    small as they go, the timeout doubles instead. A slow machine makes the preload slower,
    never fail."""

    def __init__(self, batch: int, timeout_s: float) -> None:
        self.batch = max(1, batch)
        self.timeout_s = timeout_s
        self.slowdowns = 0

    def slowed(self) -> bool:
        """After a timeout: True if the timeout grew (the connection must be remade)."""
        self.slowdowns += 1
        if self.batch > _MIN_BATCH:
            self.batch = max(_MIN_BATCH, self.batch // 2)
            return False
        if self.timeout_s >= _MAX_TIMEOUT_S:
            raise TimeoutError(f"Redis answered no batch of {self.batch} in {_MAX_TIMEOUT_S} s")
        self.timeout_s = min(_MAX_TIMEOUT_S, self.timeout_s * 2)
        return True


async def preload_sessions(
    settings: Settings,
    sessions: int,
    artifacts: int,
    *,
    first: int = 0,
    batch: int = 2000,
    lanes: int = 4,
    timeout_s: float = _BULK_TIMEOUT_S,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Heartbeat sessions ``first .. first+sessions-1``; returns how many were stored.

    ``lanes`` pipelines are in flight at once so Redis never waits for Python. ``batch``
    and ``timeout_s`` are where it starts: both adapt to the machine (``_Pace``).
    """
    preload = _Preload(settings, artifacts, range(first, first + sessions), batch, timeout_s)
    # The scripts' loading and the settling check are single calls, not batches: on a
    # connection of their own with the bulk timeout, not the batches' (which may start far
    # too short and only grows as batches time out: a SCRIPT LOAD under it failed).
    steady = connect(settings, timeout_s=max(timeout_s, _BULK_TIMEOUT_S))
    try:
        await steady.load_scripts()
        await asyncio.gather(*(preload.lane(progress) for _ in range(lanes)))
        await _settled(steady.client)
    finally:
        await preload.aclose()
        await steady.aclose()
    return preload.stored


class _Preload:
    """The sessions still to store, cut into batches, and the connection they go out on."""

    def __init__(
        self, settings: Settings, artifacts: int, ids: range, batch: int, timeout_s: float
    ) -> None:
        self.settings = settings
        self.artifacts = artifacts
        self.pace = _Pace(batch, timeout_s)
        self.redis = connect(settings, timeout_s=timeout_s)
        self.store = PresenceStore(self.redis, settings)
        self.cursor, self.end = ids.start, ids.stop
        self.retries: list[range] = []
        self.retired: list[RedisConnection] = []
        self.stored = 0

    def _next(self) -> range | None:
        if self.retries:
            return self.retries.pop()
        if self.cursor >= self.end:
            return None
        chunk = range(self.cursor, min(self.end, self.cursor + self.pace.batch))
        self.cursor = chunk.stop
        return chunk

    def _calls(self, chunk: range) -> list[ScriptCall]:
        heartbeat, artifacts = self.store.heartbeat_call, self.artifacts
        return [
            heartbeat(artifact_id(i % artifacts), session_id(i), user_id(i), "v1", _STATE)
            for i in chunk
        ]

    async def lane(self, progress: Callable[[int], None] | None) -> None:
        while (chunk := self._next()) is not None:
            try:
                results = await self.redis.run_many(self._calls(chunk))
            except (RedisTimeoutError, TimeoutError, RedisConnectionError) as exc:
                if isinstance(exc, RedisConnectionError) and "Timeout" not in str(exc):
                    raise  # refused, reset: no slowness
                self._slowed(chunk)  # redis-py's retry says a timeout as a ConnectionError
                continue
            for result in results:
                if isinstance(result, Exception):
                    raise result
            self.stored += len(chunk)
            if progress is not None:
                progress(self.stored)

    def _slowed(self, chunk: range) -> None:
        """``chunk`` timed out: sent again in halves, at a slower pace."""
        half = max(1, len(chunk) // 2)
        self.retries += [chunk[half:], chunk[:half]] if len(chunk) > 1 else [chunk]
        if self.pace.slowed():  # a longer timeout: a new connection (the old one retires
            self.retired.append(self.redis)  # once the other lanes' calls on it are done)
            self.redis = connect(self.settings, timeout_s=self.pace.timeout_s)
        log.info(
            "preload batch timed out; going slower",
            extra={"batch": self.pace.batch, "timeout_s": self.pace.timeout_s},
        )

    async def aclose(self) -> None:
        for connection in (*self.retired, self.redis):
            await connection.aclose()


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
            fields["~c"] = first * 60_000  # born with its first minute; a rollup per hour
            fields["~r"] = len(hours)
            pipe = client.pipeline(transaction=False)
            pipe.delete(k.timeline)
            pipe.hset(k.timeline, mapping=fields)
            pipe.pexpire(k.timeline, settings.timeline_ms or 86_400_000)
            pipe.zadd(k.timeline_index, {k.artifact_id: current_hour})
            pipe.execute()
    return artifacts * minutes
