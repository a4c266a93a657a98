"""benchmarks/heartbeat_cpu.py cannot rot: a small real run measures Redis's CPU per
heartbeat call at two batch sizes (no figure is asserted: the machine is shared)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "heartbeat_cpu.py"


# The script's own timeout (subprocess.run's) governs, not pytest's 60 s default.
@pytest.mark.timeout(140)
def test_heartbeat_cpu_benchmark_reports_redis_cpu_per_call() -> None:
    args = ["--sessions", "200", "--artifacts", "20", "--rounds", "2", "--batch", "1"]
    args += ["--batch", "8", "--json"]
    run = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    assert result["sessions"] == 200
    medians = result["medians"]
    assert [m["calls_per_read"] for m in medians] == [1, 8]
    assert all(m["redis_cpu_us_per_call"] >= 0 for m in medians)
    assert all(m["version"] and m["malloc"] for m in medians)
