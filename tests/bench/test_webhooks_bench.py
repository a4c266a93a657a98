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


# The script's own timeout (subprocess.run's) governs, not pytest's 60 s default (which a
# loaded machine reaches).
@pytest.mark.timeout(200)
def test_webhooks_benchmark_reports_lag_and_the_heartbeat_ratio() -> None:
    args = ["--rate", "100", "--seconds", "1", "--endpoints", "3", "--pairs", "1"]
    args += ["--round-seconds", "1", "--users", "200", "--connections", "4"]
    run = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=180
    )
    assert run.returncode == 0, run.stderr[-2000:]
    rps, one, every = (json.loads(line) for line in run.stdout.splitlines())
    assert rps["bench"] == "webhook_heartbeat_rps"
    assert rps["rounds"]["off"][0] > 0
    assert rps["rounds"]["on"][0] > 0
    assert rps["ratio"] > 0
    for lag, fanout in ((one, "one"), (every, "all")):
        assert (lag["bench"], lag["fanout"]) == ("webhook_lag", fanout)
        assert len(lag["received_per_healthy"]) == 2
        # every event each healthy endpoint should get: all of them, or its third
        for got, expected in zip(
            lag["received_per_healthy"], lag["expected_per_healthy"], strict=True
        ):
            assert got >= expected > 0
        assert lag["p99_s"] >= lag["p50_s"] >= 0
    assert every["expected_per_healthy"] == [every["sent"]] * 2
    assert sum(one["expected_per_healthy"]) < one["sent"]
