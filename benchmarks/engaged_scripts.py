"""Engaged time (issue 14), Redis alone: what a heartbeat with ``engagedMs`` costs inside
Redis against a plain heartbeat, without HTTP or the machine's other load in the figure.

    .venv/bin/python benchmarks/engaged_scripts.py [--users 2000] [--artifacts 200] \
        [--rounds 20] [--pairs 4]

Starts a private redis-server, records a view of v1 for each user, then alternates, pair
by pair: every user's plain heartbeat (``heartbeat``), every user's heartbeat with
``engagedMs`` (``engaged``: the accumulator's hot path, the fold not due), and the same
with ``PRESENCE_ENGAGEMENT_FOLD_S=0`` (``engaged-fold-0``: every report credited at once,
what each report cost before deferred crediting and what one fold costs now), each kind
on sessions of its own (a user has three tabs), each sent
``--rounds`` times in pipelines. The figure is the redis-server process's CPU time
(``/proc``, user + system) per script call, which unlike Redis's own ``usec_per_call`` does
not count the time it waited descheduled; the median of the pairs. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
from redis import Redis

from presence_svc.bench.machine import machine
from presence_svc.live.store import PresenceStore
from presence_svc.redis.connection import connect
from presence_svc.redis.embedded import EmbeddedRedis
from presence_svc.redis.keys import Keyspace
from presence_svc.settings import Settings
from presence_svc.stats.engagement import EngagementRules


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _calls(
    settings: Settings, users: int, artifacts: int, engaged: bool, tab: str
) -> list[tuple[Any, ...]]:
    store = PresenceStore(connect(settings), settings)
    rules = EngagementRules(settings)
    out = []
    for u in range(users):
        report = rules.engagement(15_000) if engaged else None
        call = store.heartbeat_call(
            f"doc-{u % artifacts}", f"{tab}-{u}", f"user-{u}", "v1", b'{"page":1}', False, report
        )
        out.append(("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args))
    return out


def _send(client: Redis, calls: list[tuple[Any, ...]]) -> None:
    pipe = client.pipeline(transaction=False)
    for call in calls:
        pipe.execute_command(*call)
    for result in pipe.execute(raise_on_error=False):
        if isinstance(result, Exception):
            raise result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--artifacts", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="engaged-bench-") as workdir:
        server = EmbeddedRedis(Path(workdir))
        with server.running() as url:
            base = Settings(
                redis_url=url, data_dir=Path(workdir), online_timeout_s=600.0, retention_s=3600.0
            )
            client = Redis.from_url(url)
            pid = int(client.info("server")["process_id"])
            keys = Keyspace(base.partitions)
            now = int(time.time() * 1000)
            for u in range(args.users):
                artifact = f"doc-{u % args.artifacts}"
                viewers = f"{Keyspace.views_prefix(keys.tag_of(artifact))}vu:{artifact}/v1"
                client.hset(viewers, f"user-{u}", msgspec.msgpack.encode([1, now, now]))
            kinds = {
                "plain": _calls(base, args.users, args.artifacts, False, "plain"),
                "engaged": _calls(base, args.users, args.artifacts, True, "engaged"),
                "engaged-fold-0": _calls(
                    base.replace(engagement_fold_s=0.0), args.users, args.artifacts, True, "fold0"
                ),
            }
            store = PresenceStore(connect(base), base)
            for script in (store._scripts.heartbeat, store._scripts.heartbeat_engaged):
                client.script_load(script.source)
            figures: dict[str, list[float]] = {k: [] for k in kinds}
            for calls in kinds.values():
                _send(client, calls)  # the sessions join; the accumulators start
            for _ in range(args.pairs):
                for kind, calls in kinds.items():
                    before = _cpu_s(pid)
                    for _ in range(args.rounds):
                        _send(client, calls)
                    spent = _cpu_s(pid) - before
                    figures[kind].append(spent / (args.rounds * len(calls)) * 1e6)
            out = {k: round(statistics.median(v), 2) for k, v in figures.items()}
            print(
                json.dumps(
                    {
                        "redis_cpu_us_per_call": out,
                        "runs": {k: [round(x, 1) for x in v] for k, v in figures.items()},
                        "users": args.users,
                        "machine": machine(),
                    }
                )
            )


if __name__ == "__main__":
    main()
