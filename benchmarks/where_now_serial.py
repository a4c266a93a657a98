"""Where-now's cost per read, serially, without HTTP: Python and Redis CPU, commands.

    .venv/bin/python benchmarks/where_now_serial.py [--reads 2000]

A private redis-server; one user online on 50 artifacts (one tab each, active), then
``store.where_now.read`` of that user ``--reads`` times with nothing written in between
(the ``where-now`` bench scenario's reads: a poll of a user whose tabs are quiet). Prints
one JSON line: process CPU per read, Redis CPU per read (``INFO cpu``), Redis commands per
read and each command's calls per read (``INFO commandstats``). Runs the tree it is in: run
main's from its own worktree and venv to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from redis import Redis

from presence_svc.live.store import PresenceStore
from presence_svc.redis.connection import connect
from presence_svc.redis.embedded import EmbeddedRedis
from presence_svc.settings import Settings

ARTIFACTS = 50


def _cpu(sync: Redis) -> float:
    info: dict[str, Any] = sync.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def _run(reads: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="where-now-serial-"))
    server = EmbeddedRedis(root / "redis")
    url = server.start()
    try:
        settings = Settings(
            redis_url=url, data_dir=root / "data", jwt_secret="x" * 40, online_timeout_s=45.0
        )
        conn = connect(settings)
        await conn.load_scripts()
        store = PresenceStore(conn, settings)
        for k in range(ARTIFACTS):
            await store.heartbeat(f"artifact-{k:04d}", "tab-0001", "user-1", "v1", None)
        await asyncio.sleep(0.3)  # the heartbeats age as the scenario's seeded ones have
        with Redis.from_url(url) as sync:
            for _ in range(50):
                await store.where_now.read("user-1")
            sync.config_resetstat()
            redis_before, started = _cpu(sync), time.process_time()
            for _ in range(reads):
                await store.where_now.read("user-1")
            python, redis_cpu = time.process_time() - started, _cpu(sync) - redis_before
            stats: dict[str, Any] = sync.info("commandstats")
        await conn.aclose()
    finally:
        server.stop()
    calls = {
        name.removeprefix("cmdstat_"): round(v["calls"] / reads, 2)
        for name, v in stats.items()
        if name not in ("cmdstat_info", "cmdstat_config")
    }
    row = {
        "python_us": round(1e6 * python / reads),
        "redis_cpu_us": round(1e6 * redis_cpu / reads),
        "commands": round(sum(calls.values()), 1),
        "calls": calls,
    }
    print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=2000)
    asyncio.run(_run(parser.parse_args().reads))


if __name__ == "__main__":
    main()
