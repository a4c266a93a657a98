"""Where now against a one-artifact online count, p99 for p99, in the same runs.

    .venv/bin/python benchmarks/where_now.py [--rounds 3]
        [any other ``presence-svc bench`` option, e.g. --duration 5 --connections 16]

Runs ``presence-svc bench --spawn --json --scenario online-one --scenario where-now``
``--rounds`` times (the order of the two flips every round, so a noisy neighbour hurts both
alike). ``where-now`` asks ``GET /v1/users/{id}/presence`` of 100 users each online on 50
artifacts (spread over the partitions: about 38 of the 64 per user); ``online-one`` asks
``GET /v1/artifacts/{id}/online`` of one artifact. Prints each run's JSON lines, then per
round where-now's p99 over online-one's p99 and p50 over p50, and their medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from typing import Any

from presence_svc.bench.machine import machine


def run_bench(order: list[str], extra: list[str]) -> dict[str, dict[str, Any]]:
    argv = [sys.executable, "-m", "presence_svc", "bench", "--spawn", "--json"]
    for name in order:
        argv += ["--scenario", name]
    run = subprocess.run([*argv, *extra], capture_output=True, text=True, timeout=900)
    if run.returncode != 0:
        raise SystemExit(f"presence-svc bench failed ({run.returncode}): {run.stderr[-3000:]}")
    rows = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    return {row["scenario"]: row for row in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args, extra = parser.parse_known_args()
    p99s: list[float] = []
    p50s: list[float] = []
    for n in range(args.rounds):
        order = ["online-one", "where-now"] if n % 2 == 0 else ["where-now", "online-one"]
        rows = run_bench(order, extra)
        for name in order:
            print(json.dumps(rows[name]), flush=True)
        where, online = rows["where-now"], rows["online-one"]
        p99s.append(where["p99_ms"] / online["p99_ms"])
        p50s.append(where["p50_ms"] / online["p50_ms"])
        summary = {"round": n, "p99_ratio": round(p99s[-1], 2), "p50_ratio": round(p50s[-1], 2)}
        print(json.dumps(summary), flush=True)
    print(
        json.dumps(
            {
                "median_p99_ratio": round(statistics.median(p99s), 2),
                "median_p50_ratio": round(statistics.median(p50s), 2),
                "machine": machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
