"""benchmarks/webhooks.py cannot rot: a small real run delivers every event to the healthy
endpoints beside a hanging one and measures heartbeats with webhooks on and off."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "webhooks.py"


def test_webhooks_benchmark_reports_lag_and_the_heartbeat_ratio() -> None:
    args = ["--rate", "100", "--seconds", "1", "--endpoints", "3", "--rounds", "1"]
    args += ["--round-seconds", "1", "--sessions", "100", "--connections", "4"]
    run = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=180
    )
    assert run.returncode == 0, run.stderr[-2000:]
    rps, lag = (json.loads(line) for line in run.stdout.splitlines())
    assert rps["bench"] == "webhook_heartbeat_rps"
    assert rps["off_rps"] > 0
    assert rps["on_rps"] > 0
    assert lag["bench"] == "webhook_lag"
    assert len(lag["received_per_healthy"]) == 2
    assert min(lag["received_per_healthy"]) >= lag["sent"]  # every event, each endpoint
    assert lag["p99_s"] >= lag["p50_s"] >= 0
