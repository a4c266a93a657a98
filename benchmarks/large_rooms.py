"""Large rooms (issue 13): the presence page and the heartbeat in a room of 20 000 users
against a room of 10, and the slowest Redis command meanwhile.

    .venv/bin/python benchmarks/large_rooms.py [--rounds 1] [--big 20000] [--small 10]
        [any other ``presence-svc bench`` option, e.g. --duration 5 --connections 64]

Runs ``presence-svc bench --spawn --json`` with ``--artifacts 1`` (everybody in one room):
``presence-list`` (``GET .../presence?limit=100``: 100 rows in the big room, 10 in the
small one), ``presence-page10`` (``?limit=10``: 10 rows in both, so what differs is the
room's size alone) and ``heartbeat``, with ``--users`` the
small and the big room, ``--rounds`` times (the order flips every round, so a noisy
neighbour hurts both alike). The big room runs without the baseline (the small one has
it). Prints each run's JSON line (with ``"room"``), then a summary: big over small rps per
scenario (median of the rounds' ratios), and the slowest single Redis command seen
(``slowest_redis_us``, SLOWLOG) in each room, and in the big room the slowest script call
and the slowest plain command apart (``slowest_redis``: a plain command logged about as
long as the scripts says the machine stalled Redis, not that a script ran long).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from typing import Any

from presence_svc.bench.machine import machine

SCENARIOS = ("presence-list", "presence-page10", "heartbeat")


def run_bench(scenario: str, users: int, extra: list[str], baseline: bool) -> dict[str, Any]:
    argv = [sys.executable, "-m", "presence_svc", "bench", "--spawn", "--json"]
    argv += ["--scenario", scenario, "--users", str(users), "--artifacts", "1"]
    # Ten users heartbeating as fast as the load allows meet the per-user rate limits
    # (answered 429 in microseconds, counted in rps): limits off, unless asked otherwise.
    argv += [*(["--rate-limits", "off"] if "--rate-limits" not in extra else []), *extra]
    if not baseline:
        argv.append("--no-baseline")
    run = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    if not run.stdout.strip():
        raise SystemExit(f"presence-svc bench failed ({run.returncode}): {run.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(run.stdout.splitlines()[-1])
    return result


def _slowest(run: dict[str, Any], kind: str) -> int:
    """``slowest_redis``'s ``kind`` of a bench line (0 from a bench without it)."""
    found = run.get("slowest_redis") or {}
    return int(found.get(kind) or 0)


def main(args: argparse.Namespace, extra: list[str]) -> None:
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    rooms = {"small": args.small, "big": args.big}
    for n in range(args.rounds):
        for scenario in SCENARIOS:
            order = ("small", "big") if n % 2 == 0 else ("big", "small")
            for room in order:
                result = run_bench(scenario, rooms[room], extra, baseline=room == "small")
                result = {"room": room, "users": rooms[room], **result}
                runs.setdefault((scenario, room), []).append(result)
                print(json.dumps(result), flush=True)
    summary: dict[str, Any] = {}
    for scenario in SCENARIOS:
        small, big = runs[(scenario, "small")], runs[(scenario, "big")]
        ratios = [b["rps"] / s["rps"] for s, b in zip(small, big, strict=True) if s["rps"]]
        summary[scenario] = {
            "big_over_small_rps": round(statistics.median(ratios), 3) if ratios else None,
            "small_rps": [r["rps"] for r in small],
            "big_rps": [r["rps"] for r in big],
            "small_ratio_to_baseline": [r["ratio"] for r in small],
            "errors_big": sum(r["errors"] for r in big),
            "slowest_redis_us_small": max((r.get("slowest_redis_us") or 0) for r in small),
            "slowest_redis_us_big": max((r.get("slowest_redis_us") or 0) for r in big),
            # a script's own time, or the machine's: the slowest script call beside the
            # slowest plain command (a plain command logged as long: Redis was stalled)
            "slowest_script_us_big": max(_slowest(r, "script_us") for r in big),
            "slowest_plain_us_big": max(_slowest(r, "plain_us") for r in big),
            "server_cpu_us_small": [r.get("server_cpu_us") for r in small],
            "server_cpu_us_big": [r.get("server_cpu_us") for r in big],
        }
    print(json.dumps({"summary": summary, "machine": machine()}), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--big", type=int, default=20_000)
    parser.add_argument("--small", type=int, default=10)
    known, rest = parser.parse_known_args()
    main(known, rest)
