"""Redis memory per live session: ``INFO memory`` before and after storing N sessions.

    .venv/bin/python benchmarks/memory.py [--sessions 1000000] [--artifacts 100000]
                                          [--redis-server /usr/bin/redis-server]

Starts a private redis-server (the embedded default's, or the binary given: Redis's
allocator and version change the figure), stores N sessions (user i, one tab, on artifact i mod M,
version and a small state) through the real heartbeat script, pipelined, and prints one
JSON line: ``used_memory`` difference / sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from redis import Redis

from presence_svc.bench.machine import machine
from presence_svc.bench.preload import preload_sessions, redis_build
from presence_svc.redis.embedded import EmbeddedRedis
from presence_svc.settings import Settings

LIVE_S = 86_400.0
"""The sessions' online timeout during the run: longer than any preload takes."""


def _used(url: str) -> int:
    with Redis.from_url(url) as client:
        return int(client.info("memory")["used_memory"])


def measure(sessions: int, artifacts: int, binary: str | None = None) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="memory-bench-") as workdir:
        server = EmbeddedRedis(Path(workdir) / "redis", binary=binary)
        with server.running() as url:
            version, allocator = redis_build(url)
            # Live sessions: none may time out while the preload runs (a loaded machine
            # stores a million in minutes, past the default 45 s), or the figure counts
            # recently-here lists and stale sessions instead (173 B at load 13-16).
            settings = Settings(
                redis_url=url,
                data_dir=Path(workdir),
                jwt_secret="x" * 32,
                online_timeout_s=LIVE_S,
                away_timeout_s=LIVE_S,
                retention_s=LIVE_S,
            )
            before = _used(url)
            started = time.perf_counter()
            stored = asyncio.run(preload_sessions(settings, sessions, artifacts))
            seconds = time.perf_counter() - started
            after = _used(url)
    return {
        "sessions": stored,
        "artifacts": artifacts,
        "used_memory_delta": after - before,
        "bytes_per_session": round((after - before) / stored, 1),
        "preload_s": round(seconds, 2),
        "online_timeout_s": LIVE_S,
        "sessions_per_s": round(stored / seconds),
        "redis_version": version,
        "allocator": allocator,
        "machine": machine(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--artifacts", type=int, default=100_000)
    parser.add_argument("--redis-server", help="this redis-server binary, not the embedded one")
    args = parser.parse_args(argv)
    result = measure(args.sessions, args.artifacts, args.redis_server)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
