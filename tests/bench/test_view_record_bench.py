"""benchmarks/view_record.py cannot rot: a small real run measures both ways of recording a
view (no figure is asserted: the machine is shared)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "view_record.py"


# The script's own timeout (subprocess.run's) governs, not pytest's 60 s default (which a
# loaded machine reaches).
@pytest.mark.timeout(140)
def test_view_record_benchmark_reports_both_ways_per_view() -> None:
    args = ["--views", "200", "--artifacts", "20", "--pairs", "1"]
    run = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    figures = result["per_view"]
    assert set(figures) == {"one-call", "two-scripts"}
    # one script call per view on one server, two for the Cluster's way
    assert figures["one-call"]["counted"]["calls"] == 1.0
    assert figures["two-scripts"]["debounced"]["calls"] == 2.0
    assert all(v >= 0 for way in figures.values() for kind in way.values() for v in kind.values())
    assert result["views"] == 200
