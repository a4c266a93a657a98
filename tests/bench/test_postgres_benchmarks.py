"""The PostgreSQL benchmarks cannot rot: a tiny real run of each (each starts its own
PostgreSQL server, as the benchmarks do), and the SQLite drain benchmark they extend."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
CLI = str(Path(sys.executable).with_name("presence-svc"))


def run(script: str, *args: str, timeout: float = 150) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def check_server(line: dict[str, Any]) -> None:
    """Durable, as the figures are reported."""
    assert line["postgres"].startswith("postgres (PostgreSQL)")
    assert line["fsync"] == "on"
    assert line["synchronous_commit"] == "on"


@pytest.mark.timeout(150)
def test_drain_into_postgres_against_copy_latency_and_insert_strategies() -> None:
    server, drain, latency, inserts = run(
        "ledger_drain.py",
        *("--ledger", "postgres", "--views", "2000", "--rounds", "2"),
        *("--rate", "500", "--seconds", "1", "--batches", "150,1000"),
    )
    check_server(server)
    assert drain["benchmark"] == "drain"
    assert (drain["ledger"], drain["raw"], drain["views"]) == ("postgres", "copy", 2000)
    assert drain["drain_rows_per_s"] > 0
    assert drain["raw_rows_per_s"] > 0
    assert len(drain["ratios"]) == 2
    assert drain["ratio"] > 0
    assert latency["benchmark"] == "view_to_ledger"
    assert latency["ledger"] == "postgres"
    assert latency["rows"] == 500
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    assert inserts["benchmark"] == "insert"
    assert inserts["rows"] == 2000
    assert set(inserts["batches"]) == {"150", "1000"}
    for by_strategy in inserts["batches"].values():
        assert set(by_strategy) == {"unnest", "copy_temp", "copy_direct"}
        assert by_strategy["unnest"]["over_unnest"] == 1.0
        for figures in by_strategy.values():
            assert figures["rows_per_s"] > 0
            assert figures["again_rows_per_s"] > 0


@pytest.mark.timeout(120)
def test_drain_into_sqlite_against_executemany() -> None:
    drain, latency = run("ledger_drain.py", "--views", "2000", "--rounds", "1", "--seconds", "1")
    assert (drain["ledger"], drain["raw"], drain["views"]) == ("sqlite", "executemany", 2000)
    assert drain["ratio"] > 0
    assert latency["ledger"] == "sqlite"
    assert latency["rows"] > 0


@pytest.mark.timeout(150)
def test_keyset_first_and_deep_pages_through_the_query_and_the_api() -> None:
    lines = run(
        "ledger_keyset.py",
        *("--sizes", "12000,20000", "--hot", "3000", "--depth", "1000"),
        *("--samples", "4", "--months", "3"),
    )
    check_server(lines[0])
    loads = [line for line in lines[1:] if line["benchmark"] == "keyset_load"]
    assert [(x["rows"], x["hot_rows"]) for x in loads] == [(12000, 3000), (20000, 3000)]
    assert all(x["partitions"] >= 3 for x in loads)  # the months, and the default
    pages = [line for line in lines[1:] if line["benchmark"] == "keyset"]
    assert [(p["rows"], p["path"]) for p in pages] == [
        (12000, "query_views"),
        (12000, "http"),
        (20000, "query_views"),
        (20000, "http"),
    ]
    for page in pages:
        assert page["depth"] == 1000
        for order in ("asc", "desc"):
            figures = page[order]
            assert 0 < figures["first_p50_ms"] <= figures["first_p99_ms"]
            assert 0 < figures["deep_p50_ms"] <= figures["deep_p99_ms"]
            assert figures["deep_over_first"] > 0
            if page["path"] == "query_views":
                assert figures["buffers_first"] > 0
                assert figures["buffers_deep"] > 0


@pytest.mark.timeout(200)
def test_presence_list_on_postgres_and_sqlite_alternating() -> None:
    lines = run(
        "presence_list.py",
        *("--rounds", "1", "--connections", "4", "--requests", "200", "--duration", "20"),
        *("--warmup", "2", "--users", "200", "--artifacts", "20"),
        timeout=190,
    )
    check_server(lines[0])
    runs, summary = lines[1:-1], lines[-1]
    assert [r["ledger"] for r in runs] == ["sqlite", "postgres"]
    for result in runs:
        assert result["scenario"] == "presence-list"
        assert result["errors"] == 0
        assert result["requests"] == 200
        assert result["rps"] > 0
    # the spawned service wrote every profile to PostgreSQL, so it read them there too
    assert runs[1]["profiles_in_postgres"] == 200
    assert summary["benchmark"] == "presence_list"
    assert summary["postgres"]["rps"] > 0
    assert summary["sqlite"]["rps"] > 0
    assert summary["postgres_over_sqlite_rps"] > 0


def test_bench_takes_a_ledger_url_only_with_spawn() -> None:
    done = subprocess.run(
        [CLI, "bench", "--ledger-url", "postgresql://nobody@127.0.0.1:1/x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--ledger-url goes with --spawn" in done.stderr
