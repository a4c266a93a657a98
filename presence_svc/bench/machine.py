"""The machine a benchmark ran on, printed with its figures: rows measured on different
machines (or on a busy one) are not comparable as equals."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

__all__ = ["machine", "machine_line"]


def _cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine() -> dict[str, Any]:
    """Cores, CPU model and load averages (1, 5, 15 min) now: a load above the cores means
    other work shared them during the run."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {
        "cores": os.cpu_count() or 0,
        "cpu": _cpu_model(),
        "load_avg": load,
        "system": f"{platform.system()} {platform.release()}",
    }


def machine_line() -> str:
    """``machine: 2 cores, <model>, load 1.02 0.80 0.60``, for a table's header."""
    m = machine()
    load = " ".join(f"{x:g}" for x in m["load_avg"]) or "unknown"
    return f"machine: {m['cores']} cores, {m['cpu']}, load {load}"
