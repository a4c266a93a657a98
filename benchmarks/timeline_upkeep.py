"""Redis time per presence write with the timeline kept and without, in the same run.

    .venv/bin/python benchmarks/timeline_upkeep.py [--users 2000] [--artifacts 40] [--rounds 5]

Starts a private redis-server, puts ``users`` sessions (one per user) on ``artifacts``
artifacts, then ``rounds`` times: every session leaves and joins again (each write changes
the counts, so each one keeps the timeline), and as many refreshing heartbeats; once with
``PRESENCE_TIMELINE_DAYS=7`` and once with 0, alternating. Reads Redis's own
``INFO commandstats`` (µs inside ``EVALSHA``, per call, and the commands the scripts ran), so
the figure is what the scripts cost Redis, not what the service adds around them. Prints one
JSON line per pass and the ratios of the fastest passes (and of the medians).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from redis import Redis

from presence_svc.live.store import PresenceStore
from presence_svc.redis.connection import connect
from presence_svc.redis.embedded import EmbeddedRedis
from presence_svc.settings import Settings


def _stats(url: str) -> tuple[float, float]:
    with Redis.from_url(url) as client:
        stats = client.info("commandstats")
    calls = stats["cmdstat_evalsha"]
    inner = sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_evalsha")
    return float(calls["usec"]) / int(calls["calls"]), inner / int(calls["calls"])


async def _chunked(call: Callable[[int], Awaitable[object]], n: int) -> None:
    """``call(0 .. n-1)``, 20 at a time (one pipeline each)."""
    for start in range(0, n, 20):
        await asyncio.gather(*(call(u) for u in range(start, min(n, start + 20))))


async def _pass(url: str, days: int, users: int, artifacts: int, kind: str) -> dict[str, object]:
    settings = Settings(
        redis_url=url,
        online_timeout_s=600,
        retention_s=3600,
        timeline_days=days,
        partitions=64,
        redis_timeout_s=1.0,
    )
    redis = connect(settings)
    await redis.load_scripts()
    store = PresenceStore(redis, settings)
    with Redis.from_url(url) as client:
        client.flushall()

    def beat(u: int) -> Awaitable[object]:
        session, user = f"tab-{u:08d}-aaaaaaaa", f"user-{u}"
        return store.heartbeat(f"doc-{u % artifacts}", session, user, "v1", None)

    def leave(u: int) -> Awaitable[object]:
        return store.leave(f"doc-{u % artifacts}", f"tab-{u:08d}-aaaaaaaa", f"user-{u}")

    await _chunked(beat, users)
    with Redis.from_url(url) as client:
        client.config_resetstat()
    if kind == "churn":
        await asyncio.gather(
            *(
                store.leave(f"doc-{u % artifacts}", f"tab-{u:08d}-aaaaaaaa", f"user-{u}")
                for u in range(users)
            )
        )
    await asyncio.gather(*(beat(u) for u in range(users)))
    usec, commands = _stats(url)
    await redis.aclose()
    return {
        "kind": kind,
        "timeline_days": days,
        "usec_per_call": round(usec, 2),
        "commands_per_call": round(commands, 2),
    }


async def main(users: int, artifacts: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="timeline-bench-") as workdir:
        server = EmbeddedRedis(Path(workdir) / "redis")
        with server.running() as url:
            for kind in ("churn", "refresh"):
                on: list[float] = []
                off: list[float] = []
                for i in range(rounds):
                    for days in (7, 0) if i % 2 == 0 else (0, 7):
                        row = await _pass(url, days, users, artifacts, kind)
                        print(json.dumps(row), flush=True)
                        (on if days else off).append(float(str(row["usec_per_call"])))
                # The least disturbed pass of each: on a shared machine a pass is only ever
                # slowed down (the time is wall time inside Redis), never sped up.
                ratio = min(on) / min(off)
                median = statistics.median(on) / statistics.median(off)
                summary = {"kind": kind, "min_on_over_off": round(ratio, 3)}
                print(json.dumps({**summary, "median_on_over_off": round(median, 3)}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--artifacts", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.users, args.artifacts, args.rounds))
