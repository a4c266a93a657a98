"""Redis memory per live session: ``INFO memory`` before and after storing N sessions.

    .venv/bin/python benchmarks/memory.py [--sessions 1000000] [--artifacts 100000]
                                          [--redis-server /usr/bin/redis-server] [--breakdown]
                                          [--no-jemalloc]

Starts a private redis-server (the embedded default's, or the binary given: Redis's
allocator and version change the figure), stores N sessions (user i, one tab, on artifact i mod M,
version and a small state) through the real heartbeat script, pipelined, and prints one
JSON line: ``used_memory`` difference / sessions. ``--breakdown`` adds where the bytes are:
``MEMORY USAGE`` of every key, summed by kind (``ps:{T}:<a>:h``, ``ps:{T}:due``...) with
its encodings, and what no key's ``MEMORY USAGE`` counts (``other``: the TTL entries, the
keyspace's hash tables, allocator rounding, the scripts).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from redis import Redis

from presence_svc.bench.machine import machine
from presence_svc.bench.preload import preload_sessions, redis_build
from presence_svc.redis.embedded import EmbeddedRedis
from presence_svc.settings import Settings

LIVE_S = 86_400.0
"""The sessions' online timeout during the run: longer than any preload takes."""


def _used(url: str) -> tuple[int, int]:
    """``used_memory`` (what Redis asked its allocator for) and ``used_memory_rss`` (what
    the process holds: the allocator's own overhead and fragmentation too)."""
    with Redis.from_url(url) as client:
        memory = client.info("memory")
    return int(memory["used_memory"]), int(memory["used_memory_rss"])


_KIND = re.compile(rb"(\w+):\{[^}]*\}:(?:(.+):)?([^:]+)")


def _kind(key: bytes) -> str:
    """``ps:{T}:<a>:h`` for ``ps:{1h}:doc-0000007:h``: the key's kind, its tag and id out."""
    match = _KIND.fullmatch(key)
    if match is None:
        return key.decode(errors="replace")
    prefix, artifact, suffix = (
        part.decode(errors="replace") if part else "" for part in match.groups()
    )
    return f"{prefix}:{{T}}:<a>:{suffix}" if artifact else f"{prefix}:{{T}}:{suffix}"


def breakdown(url: str, sessions: int, delta: int) -> dict[str, dict[str, object]]:
    """Bytes per session by key kind (``MEMORY USAGE``, exact: ``SAMPLES 0``), and ``other``."""
    keys_of: Counter[str] = Counter()
    bytes_of: Counter[str] = Counter()
    encodings: dict[str, Counter[str]] = {}
    with Redis.from_url(url) as client:
        keys = list(client.scan_iter(count=1000))
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            pipe = client.pipeline(transaction=False)
            for key in chunk:
                pipe.memory_usage(key, samples=0)
                pipe.object("encoding", key)
            answers = pipe.execute()
            for n, key in enumerate(chunk):
                kind = _kind(key)
                keys_of[kind] += 1
                bytes_of[kind] += int(answers[2 * n])
                encoding = answers[2 * n + 1]
                name = encoding.decode() if isinstance(encoding, bytes) else str(encoding)
                encodings.setdefault(kind, Counter())[name] += 1
    kinds: dict[str, dict[str, object]] = {
        kind: {
            "keys": keys_of[kind],
            "encodings": dict(encodings[kind]),
            "bytes_per_session": round(bytes_of[kind] / sessions, 2),
        }
        for kind in sorted(keys_of)
    }
    other = delta - sum(bytes_of.values())
    kinds["other"] = {"bytes_per_session": round(other / sessions, 2)}
    return kinds


def measure(
    sessions: int,
    artifacts: int,
    binary: str | None = None,
    *,
    kinds: bool = False,
    jemalloc: bool = True,
) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="memory-bench-") as workdir:
        server = EmbeddedRedis(Path(workdir) / "redis", binary=binary, jemalloc=jemalloc)
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
            before, rss_before = _used(url)
            started = time.perf_counter()
            stored = asyncio.run(preload_sessions(settings, sessions, artifacts))
            seconds = time.perf_counter() - started
            after, rss_after = _used(url)
            parts = breakdown(url, stored, after - before) if kinds else None
    result: dict[str, object] = {
        "sessions": stored,
        "artifacts": artifacts,
        "used_memory_delta": after - before,
        "bytes_per_session": round((after - before) / stored, 1),
        "rss_delta": rss_after - rss_before,
        "rss_bytes_per_session": round((rss_after - rss_before) / stored, 1),
        "preload_s": round(seconds, 2),
        "online_timeout_s": LIVE_S,
        "sessions_per_s": round(stored / seconds),
        "redis_version": version,
        "allocator": allocator,
        "machine": machine(),
    }
    if parts is not None:
        result["breakdown"] = parts
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--artifacts", type=int, default=100_000)
    parser.add_argument("--redis-server", help="this redis-server binary, not the embedded one")
    parser.add_argument(
        "--breakdown", action="store_true", help="also the bytes per session of each key kind"
    )
    parser.add_argument(
        "--no-jemalloc",
        action="store_true",
        help="keep a libc build on libc's malloc (PRESENCE_REDIS_JEMALLOC=0)",
    )
    args = parser.parse_args(argv)
    result = measure(
        args.sessions,
        args.artifacts,
        args.redis_server,
        kinds=args.breakdown,
        jemalloc=not args.no_jemalloc,
    )
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
