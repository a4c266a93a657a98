"""benchmarks/memory.py cannot rot: a small real run prints a sane bytes-per-session."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "memory.py"


# The script's own timeout (subprocess.run's) governs, not pytest's 60 s default (which a
# loaded machine reaches).
@pytest.mark.timeout(140)
def test_memory_benchmark_reports_bytes_per_stored_session() -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--sessions", "3000", "--artifacts", "300", "--breakdown"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    assert result["sessions"] == 3000
    assert result["artifacts"] == 300
    # a session holds at least its ids; far more than a few KB would be a layout bug
    assert 40 < result["bytes_per_session"] < 2000
    assert abs(result["used_memory_delta"] / 3000 - result["bytes_per_session"]) < 0.1
    # the figure depends on the server: the result says which one it came from
    assert result["redis_version"].count(".") == 2
    assert result["allocator"]
    # --breakdown: the key kinds a heartbeat writes, and what is left over, add up
    parts = result["breakdown"]
    assert parts["ps:{T}:<a>:h"]["keys"] == 300
    assert list(parts["ps:{T}:<a>:s"]["encodings"].values()) == [300]  # compact, all alike
    total = sum(part["bytes_per_session"] for part in parts.values())
    assert abs(total - result["bytes_per_session"]) < 0.5
