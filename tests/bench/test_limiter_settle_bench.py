"""benchmarks/limiter_settle.py cannot rot: a small real run measures admitting and
settling (no figure is asserted: the machine is shared)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "limiter_settle.py"


def test_limiter_settle_benchmark_reports_cpu_per_request() -> None:
    # 80 rounds of at least 20 ms: the measured time spans more than a held charge's
    # wait (the lazy time, plus up to 1 s as they are queued by the second)
    args = ["--users", "300", "--per-round", "50", "--rounds", "80", "--round-s", "0.02"]
    args += ["--lazy-s", "0.3"]
    run = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    figures = result["cpu_us_per_request"]
    assert set(figures) == {
        "admit_us",
        "settle_python_us",
        "settle_redis_us",
        "script_calls_per_request",
    }
    assert all(v >= 0 for v in figures.values())
    assert figures["script_calls_per_request"] > 0  # the held back buckets were charged
    assert result["users"] == 300
