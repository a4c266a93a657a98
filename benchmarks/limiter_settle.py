"""Rate limits (issue 17), the limiter alone: what admitting a request and settling it
costs, in the service's Python and in Redis, without HTTP or the machine's other load in
the figure.

    .venv/bin/python benchmarks/limiter_settle.py [--users 10000] [--per-round 400] \
        [--rounds 200] [--partitions 64] [--round-s 0.1] [--lazy-s 5]

Starts a private redis-server and a ``Limiter`` on a pipelined connection, as a server
process has them, with the default limits. Each round admits ``--per-round`` heartbeats
of distinct users (the ``heartbeat`` scenario's shuffled round: 400 a round is 4 000
requests a second settled every 0.1 s) and settles them with the background task's round
(``Limiter.settle_round``): the buckets due, and those held back ``--lazy-s`` (the
``PRESENCE_RATE_LIMIT_LAZY_S`` default; 0: every bucket at every round). Rounds take
``--round-s`` of real time (what holding back depends on).
The figures are CPU time per admitted request: this process's (``process_time``) for
``admit`` and for the settlement, and the redis-server process's (``/proc``, user +
system) for the settlement's script calls, which unlike Redis's ``usec_per_call`` does not
count time it waited descheduled. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from presence_svc.bench.machine import machine
from presence_svc.http.limiter import Limiter
from presence_svc.principal import Principal, Scope
from presence_svc.ratelimits import DEFAULT_RATE_LIMITS, HEARTBEAT
from presence_svc.redis.connection import connect
from presence_svc.redis.embedded import EmbeddedRedis
from presence_svc.redis.keys import Keyspace
from presence_svc.settings import Settings


async def _settle_calls(client: Any) -> int:
    """EVALSHA calls Redis has served so far (the settlement's only command here)."""
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(args: argparse.Namespace, server: EmbeddedRedis, data: Path) -> dict[str, Any]:
    settings = Settings(
        redis_url=server.url, data_dir=data, jwt_secret="x" * 32, partitions=args.partitions
    )
    redis = connect(settings, pipelined=True, timeout_s=30)
    try:
        await redis.load_scripts()
        limiter = Limiter(
            redis, Keyspace(args.partitions), DEFAULT_RATE_LIMITS, args.round_s, args.lazy_s
        )
        users = [Principal(f"user-{n:07d}", Scope.CLIENT, None) for n in range(args.users)]
        pid = int((await redis.client.info("server"))["process_id"])
        turn = 0

        async def rounds(count: int) -> tuple[float, float, float]:
            nonlocal turn
            admit_s = settle_s = 0.0
            redis_before = _cpu_s(pid)
            for _ in range(count):
                started = time.process_time()
                for _ in range(args.per_round):
                    limiter.admit(users[turn % len(users)], HEARTBEAT)
                    turn += 1
                admitted = time.process_time()
                await limiter.settle_round(time.monotonic())  # as the background task
                admit_s += admitted - started
                settle_s += time.process_time() - admitted
                await asyncio.sleep(args.round_s)  # idle CPU is 0
            return admit_s, settle_s, _cpu_s(pid) - redis_before

        # Warm: scripts loaded, buckets in Redis, held back ones charged as in steady state.
        await rounds(max(1, args.rounds // 10, math.ceil((args.lazy_s + 1) / args.round_s)))
        calls_before = await _settle_calls(redis.client)
        admit_s, settle_s, redis_s = await rounds(args.rounds)
        calls = await _settle_calls(redis.client) - calls_before
        requests = args.rounds * args.per_round
        return {
            "admit_us": round(admit_s / requests * 1e6, 2),
            "settle_python_us": round(settle_s / requests * 1e6, 2),
            "settle_redis_us": round(redis_s / requests * 1e6, 2),
            "script_calls_per_request": round(calls / requests, 4),
        }
    finally:
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--per-round", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--partitions", type=int, default=64)
    parser.add_argument("--round-s", type=float, default=0.1)
    parser.add_argument("--lazy-s", type=float, default=Settings().rate_limit_lazy_s)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="limiter-bench-") as workdir:
        data = Path(workdir) / "data"
        server = EmbeddedRedis(data)
        server.start()
        try:
            figures = asyncio.run(_measure(args, server, data))
        finally:
            server.stop()
    result = {
        "benchmark": "limiter_settle",
        "users": args.users,
        "per_round": args.per_round,
        "rounds": args.rounds,
        "partitions": args.partitions,
        "round_s": args.round_s,
        "lazy_s": args.lazy_s,
        "cpu_us_per_request": figures,
        "machine": machine(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
