"""Runs scenarios against the service and the bare-aiohttp baseline, in separate processes.

For each scenario: one probe request learns the size of the service's answer; the baseline
is told to answer that many bytes; then the same requests, connections and bounds drive
the baseline and the service in turn, from ``load_processes`` processes that start
together at a barrier after a warm-up.
"""

from __future__ import annotations

import array
import ctypes
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

from presence_svc.bench.loadgen import Job, LoadResult, run_job

__all__ = [
    "Measurement",
    "Options",
    "cpu_seconds",
    "exit_on_sigterm",
    "free_port",
    "measure",
    "probe",
    "started_process",
]


@dataclass(frozen=True, slots=True)
class Options:
    connections: int = 64
    duration_s: float = 5.0
    max_requests: int = 200_000
    load_processes: int = 1
    warmup: int = 20


@dataclass(frozen=True, slots=True)
class Measurement:
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    loadgen_cpu: float
    """CPU the load processes used, as a fraction of their wall time (1.0 = one core each)."""
    statuses: dict[int, int]
    loadgen_cpu_s: float = 0.0
    """CPU seconds the load processes used in all, measured part only."""
    cpu_s: dict[str, float | None] = field(default_factory=dict)
    """What ``measure``'s ``sample`` read, end minus start of the measured part, by part
    (None: unreadable at either end)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def probe(host: str, port: int, request: bytes, timeout_s: float = 10.0) -> tuple[int, bytes]:
    """Send one raw request on a fresh connection; the status and body of the answer."""
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed before the headers")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed before the body")
            body += chunk
        return int(head[9:12]), body[:length]


def wait_http(
    host: str, port: int, path: str, deadline_s: float, alive: Callable[[], bool]
) -> None:
    """Until ``GET path`` answers 200 (or the deadline, or the process dies)."""
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode()
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the process serving port {port} exited")
        try:
            if probe(host, port, request, timeout_s=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nothing answered 200 on {host}:{port}{path} within {deadline_s} s")


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent: int) -> Callable[[], None]:
    """For a child (``preexec_fn``): SIGTERM when the process that started it dies, however
    it dies (``subprocess.run(timeout=...)`` SIGKILLs it: no handler, no ``finally``); and
    exit now if it died already. Linux only; elsewhere the bench's own cleanup is all."""

    def arm() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            return
        if os.getppid() != parent:
            os._exit(1)

    return arm


@contextmanager
def exit_on_sigterm() -> Iterator[None]:
    """SIGTERM raises ``SystemExit`` (143) in the block, so the processes it spawned are
    stopped by their blocks' cleanup, as on Ctrl-C; the former handler afterwards."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    former = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, former if former is not None else signal.SIG_DFL)


@contextmanager
def started_process(
    argv: Sequence[str],
    *,
    port: int,
    ready_path: str,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    wait_s: float = 60.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` as a child until the block ends (SIGTERM, then SIGKILL), or until this
    process dies, however it does."""
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        list(argv),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        preexec_fn=_die_with_parent(os.getpid()),
    )
    try:
        wait_http("127.0.0.1", port, ready_path, wait_s, lambda: process.poll() is None)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if log is not subprocess.DEVNULL:
            log.close()  # type: ignore[union-attr]


def cpu_seconds(pid: int, exclude: frozenset[int] = frozenset()) -> float | None:
    """CPU time (user + system) of process ``pid`` and its descendants alive now (the
    embedded Redis, ``--processes`` children), from ``/proc``; None where there is none.
    Processes in ``exclude`` (and theirs) are left out: the embedded Redis, counted apart."""
    if pid in exclude:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        children: list[str] = []
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as listed:
                children += listed.read().split()
    except (OSError, IndexError, ValueError):
        return None
    return total + sum(cpu_seconds(int(child), exclude) or 0.0 for child in children)


def _percentile(ordered: Sequence[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(
    host: str,
    port: int,
    requests: list[bytes],
    options: Options,
    *,
    expect_status: int = 200,
    progress: Callable[[int, float], None] | None = None,
    sample: Callable[[], dict[str, float | None]] | None = None,
) -> Measurement:
    """Drive ``requests`` (cycled) at ``host:port`` from separate load processes;
    ``sample`` (CPU seconds so far, by part) is read as the measured part starts (the load
    processes leave the barrier) and once they have all answered, and its differences
    are the measurement's ``cpu_s``."""
    context = multiprocessing.get_context("spawn")
    processes = max(1, min(options.load_processes, options.connections))
    barrier = context.Barrier(processes + 1)
    counters: list[Synchronized[int]] = [
        context.Value("q", 0, lock=False) for _ in range(processes)
    ]
    children = []
    for i in range(processes):
        connections = options.connections // processes + (i < options.connections % processes)
        job = Job(
            host=host,
            port=port,
            requests=requests,
            connections=connections,
            max_requests=options.max_requests // processes,
            duration_s=options.duration_s,
            warmup=options.warmup,
            offset=i * len(requests) // processes,
            expect_status=expect_status,
        )
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=run_job, args=(job, barrier, counters[i], send), daemon=True)
        child.start()
        send.close()
        children.append((child, receive))
    results: list[LoadResult] = []
    try:
        barrier.wait(timeout=120)
        before = sample() if sample is not None else {}
        started = time.monotonic()
        for child, receive in children:
            while not receive.poll(0.2):
                if progress is not None:
                    progress(sum(c.value for c in counters), time.monotonic() - started)
                if not child.is_alive() and not receive.poll(0):
                    raise RuntimeError(f"load process {child.pid} died")
            answer: Any = receive.recv()
            if isinstance(answer, dict):
                raise RuntimeError(f"load process failed: {answer['error']}")
            results.append(answer)
        after = sample() if sample is not None else {}
    except BaseException:  # a failure, Ctrl-C, SIGTERM (exit_on_sigterm): stop them now
        for child, _ in children:
            if child.is_alive():
                child.terminate()
        raise
    finally:
        for child, receive in children:
            child.join(10)
            if child.is_alive():
                child.kill()
            receive.close()
    cpu_s = {part: _delta(before.get(part), after.get(part)) for part in after}
    return replace(_combine(results), cpu_s=cpu_s)


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def _combine(results: list[LoadResult]) -> Measurement:
    latencies = array.array("d")
    statuses: dict[int, int] = {}
    for result in results:
        latencies.frombytes(result.latencies)
        for status, count in result.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    ordered = sorted(latencies)
    seconds = max(r.finished for r in results) - min(r.started for r in results)
    answered = sum(r.ok + r.errors for r in results)
    return Measurement(
        requests=answered,
        errors=sum(r.errors for r in results),
        seconds=seconds,
        rps=answered / seconds if seconds > 0 else 0.0,
        p50_ms=_percentile(ordered, 0.50) * 1000,
        p99_ms=_percentile(ordered, 0.99) * 1000,
        loadgen_cpu=sum(r.cpu_s for r in results) / (seconds * len(results)) if seconds else 0,
        statuses=statuses,
        loadgen_cpu_s=sum(r.cpu_s for r in results),
    )


def python_argv(*args: str) -> list[str]:
    """``python -m ...`` with this interpreter (the installed package's environment)."""
    return [sys.executable, *args]


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_")}
    env.update(extra)
    return env
