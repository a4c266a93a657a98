"""A bench that ends early (a test's timeout, Ctrl-C, a SIGTERM, a SIGKILL) leaves none of
the processes it spawned behind: the service, its embedded Redis, the baselines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.children import dies_with_us

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).with_name("presence-svc"))


def _descendants(pid: int) -> dict[int, str]:
    """The live descendants of ``pid`` (pid -> command line), from /proc."""
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as listed:
                    children = [int(c) for c in listed.read().split()]
            except OSError:
                continue
            for child in children:
                if _alive(child):
                    found[child] = _cmdline(child)
                    todo.append(child)
    return found


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as raw:
            return raw.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _spawned_all(
    bench: subprocess.Popen[bytes], output: Path, deadline_s: float = 240
) -> dict[int, str]:
    """Wait until the bench runs its service and both baselines; their processes."""
    deadline = time.monotonic() + deadline_s
    while True:
        found = _descendants(bench.pid)
        lines = list(found.values())
        serving = any("presence_svc serve" in line for line in lines)
        baselines = sum("presence_svc.bench.baseline" in line for line in lines)
        if serving and baselines >= 2:
            return found
        assert bench.poll() is None, output.read_text(errors="replace")
        assert time.monotonic() < deadline, f"the bench never started everything: {lines}"
        time.sleep(0.2)


@pytest.mark.timeout(480)
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_a_bench_stopped_early_leaves_no_process_behind(tmp_path: Path, how: int) -> None:
    small = ["--users", "50", "--artifacts", "5", "--connections", "2", "--scenario", "online-one"]
    output = tmp_path / "bench.out"
    with output.open("wb") as out:
        bench = subprocess.Popen(
            [CLI, "bench", "--spawn", "--json", "--duration", "60", *small],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            preexec_fn=dies_with_us(),
        )
    try:
        spawned = _spawned_all(bench, output)
        assert any("redis-server" in line for line in spawned.values()), spawned
        bench.send_signal(how)
        bench.wait(120)
        deadline = time.monotonic() + 60
        while left := {pid: line for pid, line in spawned.items() if _alive(pid)}:
            assert time.monotonic() < deadline, f"still running after the bench: {left}"
            time.sleep(0.2)
        if how == signal.SIGTERM:
            assert bench.returncode == 128 + signal.SIGTERM  # its own exit, cleanup done
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
        for pid in _descendants(bench.pid):  # nothing to do unless the test failed
            os.kill(pid, signal.SIGKILL)
