"""A view's Redis side (issue 19): ``ViewStore.record`` as one script call (a single
server: ``lua/stats/view.lua``) against the two scripts a Cluster runs (``note_view.lua``
and ``record_view.lua`` in one round trip, what every deployment ran before), on one
server, without HTTP.

    .venv/bin/python benchmarks/view_record.py [--views 20000] [--artifacts 1000] \
        [--pairs 4] [--concurrency 64]

Starts a private redis-server and a pipelined connection as a server process has. Pair by
pair, each way records ``--views`` views of fresh ids (``counted``: users spread over
``--artifacts`` artifacts and 3 versions), then the same views again inside the debounce
window (``debounced``), ``--concurrency`` at a time. Per view: the redis-server process's
CPU time (``/proc``, user + system, which unlike ``usec_per_call`` does not count time it
waited descheduled), Redis's own script time (``INFO commandstats``, all ``EVALSHA`` calls)
and this process's CPU time (building, packing, sending the calls and parsing answers); the
medians of the pairs. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from redis import Redis

from presence_svc.bench.machine import machine
from presence_svc.redis.connection import RedisConnection, connect
from presence_svc.redis.embedded import EmbeddedRedis
from presence_svc.settings import Settings
from presence_svc.stats.views import ViewStore

WAYS = ("one-call", "two-scripts")
KINDS = ("counted", "debounced")


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(
    store: ViewStore, sync: Redis, pid: int, views: list[tuple[str, str, str]], concurrency: int
) -> dict[str, float]:
    gate = asyncio.Semaphore(concurrency)

    async def one(artifact: str, version: str, user: str) -> None:
        async with gate:
            await store.record(artifact, version, user, f"tab-{user}")

    sync.config_resetstat()
    redis_cpu, own_cpu = _cpu_s(pid), time.process_time()
    await asyncio.gather(*(one(*view) for view in views))
    redis_cpu, own_cpu = _cpu_s(pid) - redis_cpu, time.process_time() - own_cpu
    stats: Any = sync.info("commandstats")
    n = len(views)
    return {
        "redis_cpu_us": redis_cpu / n * 1e6,
        "redis_script_us": stats["cmdstat_evalsha"]["usec"] / n,
        "calls": stats["cmdstat_evalsha"]["calls"] / n,
        "python_cpu_us": own_cpu / n * 1e6,
    }


async def _run(args: argparse.Namespace, url: str, pid: int, data: Path) -> dict[str, Any]:
    settings = Settings(redis_url=url, data_dir=data, view_debounce_s=3600.0, run_worker=False)
    # a loaded machine stalls Redis for seconds: a benchmark waits, it never fails for it
    connection: RedisConnection = connect(settings, pipelined=True, timeout_s=60.0)
    await connection.load_scripts()
    stores = {
        "one-call": ViewStore(connection, settings),
        "two-scripts": ViewStore(connection, settings.replace(redis_cluster=True)),
    }
    sync = Redis.from_url(url)
    server: Any = sync.info("server")
    figures: dict[str, dict[str, list[dict[str, float]]]] = {
        way: {kind: [] for kind in KINDS} for way in WAYS
    }
    try:
        for pair in range(args.pairs):
            for way in WAYS if pair % 2 == 0 else WAYS[::-1]:
                views = [
                    (f"doc-{pair}-{way}-{u % args.artifacts}", f"v{u % 3}", f"user-{u:07d}")
                    for u in range(args.views)
                ]
                for kind in KINDS:  # the same views again: inside the window
                    result = await _measure(stores[way], sync, pid, views, args.concurrency)
                    figures[way][kind].append(result)
    finally:
        sync.close()
        await connection.aclose()
    medians = {
        way: {
            kind: {name: round(statistics.median(r[name] for r in runs), 2) for name in runs[0]}
            for kind, runs in by_kind.items()
        }
        for way, by_kind in figures.items()
    }
    return {
        "views": args.views,
        "pairs": args.pairs,
        "per_view": medians,
        "redis_version": server["redis_version"],
        "machine": machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--views", type=int, default=20_000)
    parser.add_argument("--artifacts", type=int, default=1_000)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis")
        url = server.start()
        try:
            pid = int(Redis.from_url(url).info("server")["process_id"])
            print(json.dumps(asyncio.run(_run(args, url, pid, Path(tmp) / "data"))))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
