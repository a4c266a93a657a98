"""CPU of one 7-day ``1m`` timeline read in this process, past the request's fixed cost.

    .venv/bin/python benchmarks/timeline_read.py [--reads 200]

A private redis-server holding 4 artifacts' timelines as the ``timeline`` bench scenario
writes them (a change in every minute of 7 days, the hours rolled up). For the first one,
the median process CPU of ``Timeline.minutes_read`` + ``minutes_answer`` (plain and gzip):
``hit`` (nothing changed since the last read), ``tail changed`` (a minute of the current
hour written before each read, as a live artifact has; the write's own client CPU is in
the figure), and with ``PRESENCE_TIMELINE_CACHE_MB=0`` (nothing kept). Redis's own CPU is
not in these figures: ``redis_us_per_read`` is its ``INFO commandstats`` µs per
``EVALSHA`` (the read script) over the case. One JSON line per case.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
from redis import Redis

from presence_svc.bench.preload import preload_timeline
from presence_svc.bench.scenarios import artifact_id
from presence_svc.redis.connection import connect
from presence_svc.redis.embedded import EmbeddedRedis
from presence_svc.redis.keys import Keyspace
from presence_svc.settings import Settings
from presence_svc.timeline.query import Timeline


class _NoRows:
    """The rollup table, empty: every read here starts inside what Redis keeps."""

    async def put_hours(self, rows: Any) -> None:
        pass

    async def hours(self, artifact: str, first_ms: int, end_ms: int) -> tuple[None, list[Any]]:
        return None, []


async def _run(reads: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="timeline-read-"))
    server = EmbeddedRedis(root / "redis")
    url = server.start()
    try:
        settings = Settings(redis_url=url, data_dir=root / "data", jwt_secret="x" * 40)
        preload_timeline(settings, 4, 10_090)
        conn = connect(settings)
        await conn.load_scripts()
        minute = int(time.time() * 1000) // 60_000
        first, end = minute + 1 - 10_080, minute + 1
        key = Keyspace(settings.partitions).artifact(artifact_id(0)).timeline
        with Redis.from_url(url) as sync:
            for mb in (32, 0):
                timeline = Timeline(conn, _NoRows(), settings.replace(timeline_cache_mb=mb))
                for gzip in (False, True):
                    for case in ("hit", "tail changed") if mb else ("nothing kept",):
                        spent = []
                        sync.config_resetstat()
                        for i in range(reads + 5):
                            if case == "tail changed":
                                values = (i % 50, i % 50, i % 50, i % 50, 1, 1)
                                sync.hset(key, str(minute), msgspec.msgpack.encode(values))
                            started = time.process_time()
                            read = await timeline.minutes_read(artifact_id(0), first, end)
                            whole = timeline.minutes_answer(read, gzip=gzip)
                            spent.append(time.process_time() - started)
                        row = {
                            "case": case,
                            "gzip": gzip,
                            "median_us": round(statistics.median(spent[5:]) * 1e6),
                            "redis_us_per_read": sync.info("commandstats")["cmdstat_evalsha"][
                                "usec_per_call"
                            ],
                            "body_bytes": len(whole.body),
                        }
                        print(json.dumps(row))
        await conn.aclose()
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=200)
    asyncio.run(_run(parser.parse_args().reads))


if __name__ == "__main__":
    main()
