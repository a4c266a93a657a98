"""benchmarks/erasure.py cannot rot: a small real run erases its user completely."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "erasure.py"


# The script's own timeout (subprocess.run's) governs, not pytest's 60 s default (which a
# loaded machine reaches).
@pytest.mark.timeout(140)
def test_erasure_benchmark_erases_every_view_and_times_each_eraser() -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--artifacts", "600", "--partitions", "16"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    assert (result["artifacts"], result["complete"]) == (600, True)
    assert result["ledger_rows_tombstoned"] == 600
    erasers = result["erasers"]
    assert list(erasers) == [
        "views",
        "presence",
        "user-keys",
        "views-streams",
        "ledger",
        "engagement-left",
        "engagement-totals",
        "webhooks",
        "privacy-mirror",
        "profile",
    ]
    assert erasers["views"]["steps"] == 600 // 250 + 2  # three batches, then the empty index
    assert result["total_s"] >= sum(e["s"] for e in erasers.values())
