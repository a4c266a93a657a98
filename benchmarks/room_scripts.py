"""Large rooms (issue 13), Redis alone: what the presence page and the heartbeat cost
inside Redis in a room of N users, without HTTP, Python or the users directory.

    .venv/bin/python benchmarks/room_scripts.py [--rooms 10,20000] [--calls 2000]

Starts a private redis-server, fills each room (one artifact, N users with one session
each) through the real heartbeat script, then per room: ``--calls`` first pages of 100 and
of 10 users (``PresenceStore.page``), and ``--calls`` refreshing heartbeats of random users
of the room. For each: Redis's own time per script call (``INFO commandstats``
``usec_per_call`` of EVALSHA) and the longest single call (SLOWLOG, every call logged).
Both include time Redis spent descheduled on a busy machine; the median of the SLOWLOG
durations is the steadier figure. Prints one JSON line per room and measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from redis import Redis

from presence_svc.bench.machine import machine
from presence_svc.live.store import PresenceStore
from presence_svc.redis.connection import connect
from presence_svc.redis.embedded import EmbeddedRedis
from presence_svc.settings import Settings


def _slowlog_start(client: Redis) -> None:
    client.config_set("slowlog-log-slower-than", 0)
    client.config_set("slowlog-max-len", 100_000)
    client.slowlog_reset()
    client.config_resetstat()


def _slowlog_read(client: Redis) -> dict[str, Any]:
    entries = [
        int(e["duration"])
        for e in client.slowlog_get(100_000)
        if e["command"].startswith(b"EVALSHA")
    ]
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return {
        "calls": len(entries),
        "usec_per_call": stats.get("usec_per_call"),
        "median_us": statistics.median(entries) if entries else None,
        "p99_us": sorted(entries)[int(len(entries) * 0.99)] if entries else None,
        "max_us": max(entries, default=None),
    }


async def _measure(
    client: Redis, calls: int, one: Callable[[int], Awaitable[object]]
) -> dict[str, Any]:
    _slowlog_start(client)
    for n in range(calls):
        await one(n)
    return _slowlog_read(client)


def _page(store: PresenceStore, room: str, limit: int) -> Callable[[int], Awaitable[object]]:
    async def one(_: int) -> object:
        return await store.page(room, limit, None)

    return one


def _beat(store: PresenceStore, room: str, size: int) -> Callable[[int], Awaitable[object]]:
    rng = random.Random(size)

    async def one(_: int) -> object:
        # the heartbeat script alone: ``store.heartbeat`` would also write the where-now
        # index of each session it has not noted yet (the fill did not), once per session
        # and 10 online timeouts in any room, which the big room would pay 20 000 times here
        u = rng.randrange(size)
        call = store.heartbeat_call(room, f"tab-{u:08d}", f"user-{u:06d}", "v1", b'{"p":1}')
        return await store.redis.run(call)

    return one


async def run(url: str, workdir: Path, rooms: list[int], calls: int) -> None:
    settings = Settings(
        redis_url=url, data_dir=workdir, jwt_secret="x" * 32, online_timeout_s=600.0
    )
    redis = connect(settings)
    await redis.load_scripts()
    store = PresenceStore(redis, settings)
    client = Redis.from_url(url)
    for size in rooms:
        artifact = f"room-{size}"
        fill = [
            store.heartbeat_call(artifact, f"tab-{u:08d}", f"user-{u:06d}", "v1", b'{"p":1}')
            for u in range(size)
        ]
        for start in range(0, size, 500):
            for result in await redis.run_many(fill[start : start + 500]):
                if isinstance(result, Exception):
                    raise result
        for name, one in (
            ("page100", _page(store, artifact, 100)),
            ("page10", _page(store, artifact, 10)),
            ("heartbeat", _beat(store, artifact, size)),
        ):
            result = {"room": size, "what": name, **await _measure(client, calls, one)}
            result["machine"] = machine()
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()
    client.close()
    await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rooms", default="10,20000")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    rooms = [int(r) for r in args.rooms.split(",")]
    with tempfile.TemporaryDirectory(prefix="room-scripts-") as workdir:
        server = EmbeddedRedis(Path(workdir) / "redis")
        with server.running() as url:
            asyncio.run(run(url, Path(workdir), rooms, args.calls))


if __name__ == "__main__":
    main()
