"""The ``presence-list`` scenario with the users directory in PostgreSQL against SQLite.

    .venv/bin/python benchmarks/presence_list.py [--rounds 3] [--no-profiles]
        [any other ``presence-svc bench`` option, e.g. --duration 5 --connections 64]

Starts a private PostgreSQL server (durable, as
``presence_svc/bench/pgserver.py`` starts it), then runs
``presence-svc bench --spawn --json --scenario presence-list --profiles`` alternately with
the spawned service on its data dir's SQLite file and with ``--ledger-url`` on a fresh
PostgreSQL database, ``--rounds`` times each (the order flips every round, so a noisy
neighbour hurts both alike). With ``--profiles`` (the default here) every user has a profile
first, so each presence list joins ten names from the directory: one query per request.

Prints each run's JSON line (with ``"ledger"``), then a summary: the medians per backend,
and PostgreSQL over SQLite as the median of the pairwise rps ratios and of the pairwise
ratios of ``ratio`` (each run's rps over its own baseline, measured just before it). After a
PostgreSQL run the database is checked to hold the profiles (the service really used it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from typing import Any

from presence_svc.bench.machine import machine
from presence_svc.bench.pgserver import PostgresServer, stop_on_sigterm


def run_bench(extra: list[str], ledger_url: str | None) -> dict[str, Any]:
    argv = [sys.executable, "-m", "presence_svc", "bench", "--spawn", "--json"]
    argv += ["--scenario", "presence-list", *extra]
    if ledger_url is not None:
        argv += ["--ledger-url", ledger_url]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    if run.returncode != 0:
        raise SystemExit(f"presence-svc bench failed ({run.returncode}): {run.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(run.stdout.splitlines()[-1])
    return result


def _median(runs: list[dict[str, Any]], field: str) -> float:
    return round(statistics.median(r[field] for r in runs), 3)


def main(args: argparse.Namespace, extra: list[str]) -> None:
    if args.profiles:
        extra = ["--profiles", *extra]
    runs: dict[str, list[dict[str, Any]]] = {"sqlite": [], "postgres": []}
    stop_on_sigterm()
    with PostgresServer() as server:
        print(json.dumps({"postgres": server.version(), **server.settings()}), flush=True)
        for n in range(args.rounds):
            for ledger in ("sqlite", "postgres") if n % 2 == 0 else ("postgres", "sqlite"):
                url = server.create_database(f"presence_{n}") if ledger == "postgres" else None
                result = {"ledger": ledger, **run_bench(extra, url)}
                if url is not None:
                    profiles = int(server.psql("SELECT count(*) FROM users", f"presence_{n}"))
                    result["profiles_in_postgres"] = profiles
                    if args.profiles and profiles == 0:
                        raise SystemExit("the service did not write its profiles to PostgreSQL")
                    server.psql(f"DROP DATABASE presence_{n} WITH (FORCE)")
                runs[ledger].append(result)
                print(json.dumps(result), flush=True)
    pairs = list(zip(runs["postgres"], runs["sqlite"], strict=True))
    summary: dict[str, Any] = {"benchmark": "presence_list", "rounds": args.rounds}
    for ledger, done in runs.items():
        summary[ledger] = {
            field: _median(done, field) for field in ("rps", "ratio", "p50_ms", "p99_ms")
        }
    summary["postgres_over_sqlite_rps"] = round(
        statistics.median(p["rps"] / s["rps"] for p, s in pairs), 3
    )
    summary["postgres_over_sqlite_ratio"] = round(
        statistics.median(p["ratio"] / s["ratio"] for p, s in pairs), 3
    )
    summary["pairwise_rps"] = [round(p["rps"] / s["rps"], 3) for p, s in pairs]
    summary["machine"] = machine()
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="runs per backend")
    parser.add_argument(
        "--no-profiles", dest="profiles", action="store_false", help="an empty users directory"
    )
    known, rest = parser.parse_known_args()
    main(known, rest)
