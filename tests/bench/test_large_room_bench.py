"""benchmarks/large_room_events.py cannot rot: a small real run of interval mode under
churn gives each listener at most one message per interval, with exact counts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "large_room_events.py"


# The script's own timeout (subprocess.run's) governs, not pytest's 60 s default (which a
# loaded machine reaches).
@pytest.mark.timeout(200)
def test_large_room_benchmark_reports_one_message_per_interval_and_exact_counts() -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *("--users", "1000", "--churn", "100", "--seconds", "5", "--listeners", "5"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    assert result["mode"] == "interval"
    assert result["other_events_during_churn"] == 0  # no join/leave/count in interval mode
    assert result["intervals_received"] >= 5  # 5 listeners, at least one interval each
    assert result["most_messages_per_listener"] <= result["intervals_in_window"]
    exact, received = map(int, result["intervals_counts_exact"].split("/"))
    assert exact == received
    assert result["last_interval_equals_online"] is True
    assert result["online_after"] == 1000
