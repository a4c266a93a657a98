"""Rate limits, the settlement's hold on Redis: how long Redis runs one settlement write's
script calls back to back (every request whose calls are written after it waits that
long), for a round of ``--due`` buckets of distinct users.

    .venv/bin/python benchmarks/limiter_hold.py [--due 200] [--rounds 6] [--partitions 64]

Starts a private redis-server and a ``Limiter`` on a pipelined connection (as a server
process has them), default limits, nothing held back; each round admits ``--due``
heartbeats of distinct users and settles them (``Limiter.settle``). A write's hold is the
growth of ``EVALSHA``'s total time in ``INFO commandstats`` across it (nothing else runs
on this Redis). 200 due a round is the ``heartbeat`` bench's steady state at ~12 000 req/s
(a user is charged every 6 heartbeats); 2 048 is a round of held charges coming due
together (``_RELEASED_PER_ROUND``). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from presence_svc.bench.machine import machine
from presence_svc.http.limiter import Limiter
from presence_svc.principal import Principal, Scope
from presence_svc.ratelimits import DEFAULT_RATE_LIMITS, HEARTBEAT
from presence_svc.redis.connection import connect
from presence_svc.redis.embedded import EmbeddedRedis
from presence_svc.redis.keys import Keyspace
from presence_svc.redis.scripts import ScriptCall
from presence_svc.settings import Settings


async def _measure(args: argparse.Namespace, server: EmbeddedRedis, data: Path) -> dict[str, Any]:
    settings = Settings(
        redis_url=server.url, data_dir=data, jwt_secret="x" * 32, partitions=args.partitions
    )
    redis = connect(settings, pipelined=True, timeout_s=30)
    try:
        await redis.load_scripts()
        limiter = Limiter(redis, Keyspace(settings.partitions), DEFAULT_RATE_LIMITS, lazy_s=0)
        holds: list[int] = []
        run_many = redis.run_many

        async def evalsha_us() -> int:
            stats = await redis.client.info("commandstats")
            return int(stats.get("cmdstat_evalsha", {}).get("usec", 0))

        async def timed(calls: Sequence[ScriptCall]) -> list[Any]:
            before = await evalsha_us()
            answers = await run_many(calls)
            holds.append(await evalsha_us() - before)
            return answers

        redis.run_many = timed  # type: ignore[method-assign]
        for round_ in range(args.rounds):
            for i in range(args.due):
                user = f"user-{round_ % 2}-{i:05d}"  # a bucket charged two rounds ago
                limiter.admit(Principal(user, Scope.CLIENT, None), HEARTBEAT)
            await limiter.settle(held_since=None)
            await asyncio.sleep(0.05)
    finally:
        await redis.aclose()
    holds.sort()
    return {
        "due_per_round": args.due,
        "writes_per_round": len(holds) / args.rounds,
        "hold_us_median": holds[len(holds) // 2],
        "hold_us_p90": holds[int(len(holds) * 0.9)],
        "hold_us_total_per_round": sum(holds) // args.rounds,
        "machine": machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--due", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--partitions", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp))
        with server.running():
            print(json.dumps(asyncio.run(_measure(args, server, Path(tmp)))))


if __name__ == "__main__":
    main()
