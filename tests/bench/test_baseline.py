"""The bare-aiohttp baseline with ``--processes N`` (the yardstick of ``bench
--server-processes N``): every process answers the size set by one ``PUT``, and ending
the parent ends them all."""

from __future__ import annotations

import os
import signal
import sys
import time

from presence_svc.bench.runner import free_port, probe, started_process


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as listed:
            found += [int(child) for child in listed.read().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_two_processes_share_the_port_and_the_body_size() -> None:
    port = free_port()
    argv = [sys.executable, "-m", "presence_svc.bench.baseline", "--port", str(port)]
    with started_process([*argv, "--processes", "2"], port=port, ready_path="/") as parent:
        deadline = time.monotonic() + 30
        while len(_children(parent.pid)) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        children = _children(parent.pid)
        size = b"PUT /__bench/size/321 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
        assert probe("127.0.0.1", port, size) == (200, b"ok")
        # Each answer on a fresh connection: the kernel spreads them over both processes,
        # and whichever answers has the size one of them was told.
        answers = {
            probe("127.0.0.1", port, b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n") for _ in range(40)
        }
        assert {(status, len(body)) for status, body in answers} == {(200, 321)}
        parent.send_signal(signal.SIGTERM)
        parent.wait(30)
    deadline = time.monotonic() + 30
    while any(_alive(child) for child in children):
        assert time.monotonic() < deadline, "a baseline process outlived its parent"
        time.sleep(0.05)
