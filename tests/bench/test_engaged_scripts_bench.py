"""benchmarks/engaged_scripts.py cannot rot: a small real run measures the three kinds of
heartbeat call (no figure is asserted: the machine is shared)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "engaged_scripts.py"


# The script's own timeout (subprocess.run's) governs, not pytest's 60 s default (which a
# loaded machine reaches).
@pytest.mark.timeout(140)
def test_engaged_scripts_benchmark_reports_redis_cpu_per_call() -> None:
    args = ["--users", "300", "--artifacts", "30", "--rounds", "3", "--pairs", "1"]
    run = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    figures = result["redis_cpu_us_per_call"]
    assert set(figures) == {"plain", "engaged", "engaged-fold-0"}
    assert all(v >= 0 for v in figures.values())
    assert result["users"] == 300
