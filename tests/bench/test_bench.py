"""The benchmark cannot rot: a tiny real run of every scenario (a few hundred requests),
through the real command line, against a service it spawns itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from presence_svc.bench.scenarios import SCENARIOS

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).with_name("presence-svc"))
FIELDS = {
    "scenario": str,
    "connections": int,
    "requests": int,
    "errors": int,
    "rps": float,
    "p50_ms": float,
    "p99_ms": float,
    "baseline_rps": float,
    "ratio": float,
    "machine": dict,
    "statuses": dict,
}


TINY = ["--connections", "2", "--requests", "200", "--duration", "20", "--warmup", "1"]
"""A few hundred requests per measurement."""


def _json_lines(cwd: Path, *args: str, timeout: float = 220) -> list[dict[str, Any]]:
    """``presence-svc bench --spawn --json *args`` run to its end; its JSON lines."""
    run = subprocess.run(
        [CLI, "bench", "--spawn", "--json", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return [json.loads(line) for line in run.stdout.splitlines()]


def _refused(*args: str) -> str:
    """``presence-svc bench *args`` refused as a usage error (exit 2); what it said."""
    run = subprocess.run([CLI, "bench", *args], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    return run.stderr


@pytest.mark.timeout(360)
def test_every_scenario_runs_without_errors_and_prints_json_lines(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            CLI,
            "bench",
            "--spawn",
            "--json",
            "--connections",
            "4",
            "--load-processes",
            "2",
            "--requests",
            "300",
            "--duration",
            "20",
            "--warmup",
            "2",
            "--users",
            "300",
            "--artifacts",
            "40",
            "--preload",
            "500",
            "--preload-artifacts",
            "100",
        ],
        capture_output=True,
        text=True,
        timeout=340,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [line["scenario"] for line in lines] == list(SCENARIOS)
    for line in lines:
        for name, kind in FIELDS.items():
            assert isinstance(line[name], kind), (name, line)
        assert line["connections"] == 4
        assert line["errors"] == 0, line
        assert line["requests"] == 300, line
        assert list(line["statuses"].values()) == [300], line  # one status: the expected
        assert line["rps"] > 0
        assert 0 < line["p50_ms"] <= line["p99_ms"]
        # the ratio is rounded to 3 decimals: a small one (where-now: ~0.02) is off by up to 2%
        expected = line["rps"] / line["baseline_rps"]
        assert line["ratio"] == pytest.approx(expected, rel=0.01, abs=0.0005)
        assert line["sessions_stored"] == 500
        # the embedded Redis it ran on, e.g. "6.2.14 libc"
        version, allocator = line["redis"].split(" ")
        assert version.count(".") == 2
        assert allocator
        _check_cpu_fields(line)
    online = next(line for line in lines if line["scenario"] == "online-batch")
    assert online["body_bytes"] > 40 * 20  # one count per artifact asked for


def _check_cpu_fields(line: dict[str, Any]) -> None:
    """Each part's CPU per request is there, and the ratios are made of those parts
    (``bench.cpu``; their values are checked from known inputs in ``test_cpu``)."""
    parts = ("python", "redis", "loadgen", "baseline", "baseline_loadgen")
    cpu = {part: line[f"{part}_cpu_us"] for part in parts}
    for part, value in cpu.items():  # a few hundred requests: a clock tick may be all
        assert isinstance(value, float), (part, line)
        assert value >= 0, (part, line)
    assert cpu["python"] + cpu["redis"] > 0, line
    top = cpu["baseline"] + cpu["baseline_loadgen"]
    ceiling = top / (cpu["baseline"] + cpu["redis"] + cpu["loadgen"])
    bound = top / (cpu["python"] + cpu["redis"] + cpu["loadgen"])
    assert line["ceiling_ratio"] == pytest.approx(ceiling, rel=0.02, abs=0.002)
    assert line["cpu_bound_ratio"] == pytest.approx(bound, rel=0.02, abs=0.002)
    assert line["cores_used"] > 0
    assert line["baseline_cores_used"] > 0


def test_bench_refuses_bad_numbers() -> None:
    assert "--connections must be positive" in _refused("--connections", "0")


@pytest.mark.timeout(240)
def test_compare_limits_measures_both_services_alternately(tmp_path: Path) -> None:
    args = [*TINY, "--users", "200", "--artifacts", "20", "--scenario", "heartbeat"]
    *lines, compared = _json_lines(tmp_path, "--compare-limits", "--no-baseline", *args)
    assert [line["scenario"] for line in lines] == [
        "heartbeat",
        "heartbeat/limits-off",
        "heartbeat/limits-off",  # then the other way round
        "heartbeat",
    ]
    for line in lines:
        assert line["errors"] == 0, line
        assert line["server_cpu_us"] > 0, line  # the spawned service's CPU per request
    on_first = lines[0]["rps"] / lines[1]["rps"]
    off_first = lines[3]["rps"] / lines[2]["rps"]
    assert compared["comparison"] == "heartbeat/limits-off"
    assert [r["first"] for r in compared["rounds"]] == ["heartbeat", "heartbeat/limits-off"]
    assert [r["rps_ratio"] for r in compared["rounds"]] == pytest.approx(
        [on_first, off_first], abs=0.002
    )
    assert compared["rps_ratio_median"] == pytest.approx((on_first + off_first) / 2, abs=0.002)
    refused = _refused("--compare-limits", "--url", "http://127.0.0.1:9")
    assert "--compare-limits goes with --spawn" in refused


@pytest.mark.timeout(240)
def test_compare_timeline_measures_a_service_keeping_none(tmp_path: Path) -> None:
    args = [*TINY, "--users", "200", "--artifacts", "20", "--scenario", "churn"]
    *lines, compared = _json_lines(tmp_path, "--compare-timeline", "--no-baseline", *args)
    assert [line["scenario"] for line in lines] == [
        "churn",
        "churn/timeline-off",
        "churn/timeline-off",
        "churn",
    ]
    assert all(line["errors"] == 0 for line in lines), lines
    assert compared["comparison"] == "churn/timeline-off"
    refused = _refused("--compare-timeline", "--url", "http://127.0.0.1:9")
    assert "--compare-timeline goes with --spawn" in refused


@pytest.mark.timeout(240)
def test_rounds_measure_the_baseline_and_the_service_in_turn(tmp_path: Path) -> None:
    """``--rounds 3``: one line for the scenario, its ratios the medians of three rounds of
    the baseline then the service, and every round's own figures."""
    args = [*TINY, "--users", "200", "--artifacts", "20", "--scenario", "heartbeat"]
    (line,) = _json_lines(tmp_path, "--rounds", "3", *args)
    rounds = line["rounds"]
    assert len(rounds) == 3
    for each in rounds:
        assert each["rps"] > 0, each
        assert each["baseline_rps"] > 0, each
        assert each["ratio"] == pytest.approx(each["rps"] / each["baseline_rps"], abs=0.002)
        assert each["p99_ratio"] == pytest.approx(
            each["p99_ms"] / each["baseline_p99_ms"], abs=0.01
        )
    ratios = sorted(each["ratio"] for each in rounds)
    assert line["ratio"] == ratios[1]
    assert line["p99_ratio"] == sorted(each["p99_ratio"] for each in rounds)[1]
    middle = next(each for each in rounds if each["ratio"] == ratios[1])
    assert (line["rps"], line["baseline_rps"]) == (middle["rps"], middle["baseline_rps"])
    assert "--rounds must be positive" in _refused("--rounds", "0")


@pytest.mark.timeout(120)
def test_no_jemalloc_runs_the_spawned_services_redis_on_libc(tmp_path: Path) -> None:
    args = [*TINY, "--users", "50", "--artifacts", "5", "--scenario", "heartbeat", "--no-baseline"]
    lines = {}
    for flag in ([], ["--no-jemalloc"]):
        lines[bool(flag)] = _json_lines(tmp_path, *flag, *args, timeout=100)[0]
    assert lines[False]["redis"].endswith(" libc+jemalloc")
    assert lines[True]["redis"].endswith(" libc")
    refused = _refused("--no-jemalloc", "--url", "http://127.0.0.1:9")
    assert "--no-jemalloc goes with --spawn" in refused
