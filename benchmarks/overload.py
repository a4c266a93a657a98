"""Overload: what a process does when offered three times the load it can carry.

    .venv/bin/python benchmarks/overload.py [--seconds 10] [--factor 3] [--max-inflight N]
        [--max-loop-lag-ms MS]

Starts the real ``presence-svc serve`` (its own process, embedded Redis, in-process
worker), then, with heartbeats of 5 000 users over raw HTTP/1.1 keep-alive connections:

1. **capacity**: a closed loop at normal concurrency (64 connections, each sending its next
   heartbeat when the answer comes): the rate the process carries and its p50/p99;
2. **overload**: an open loop offering ``--factor`` times that rate (arrivals on a fixed
   schedule, whatever the answers; each on a free connection of a pool of 2 000, so up to
   2 000 requests can be outstanding, far beyond the cap): the rate of accepted (200)
   answers, their p99 against the capacity p99, the share answered 503, and arrivals that
   found every connection busy (``unsent``: the server had that many outstanding).

Each pooled connection answers a ``GET /healthz`` first (a handshake the server dropped
at its listen backlog is not a live connection). After each overload phase the same
arrivals go to ``bare_server.py`` (a canned 503, nothing else): what the machine lets
through at that rate. Per phase: the busy shares of serve, its Redis and the load generator
(``/proc/<pid>/schedstat``), the load generator's own lag, the heartbeat handler's mean
time (``/metrics``), ``ksoftirqd``'s wait and the kernel's TCP drop counters.

A connection the server closes (an answer with ``Connection: close``) is opened again for
the next request that lands on it, as a client would: the time to connect, in the listen
backlog included, counts in that request's latency, and a failure to connect is
``failed_connections`` (``reconnects``, ``connect_failed``). Per phase also the serve
process's CPU per answer (``server_cpu_us_per_answer_*``) and, in the bare baseline, the bare
server's (``bare_cpu_us_per_answer``: what a canned 503 costs with no service around it,
mostly the kernel's share).

The serve process's resident memory (``VmRSS`` of ``/proc/<pid>/status``) is sampled every
0.25 s throughout. Prints one JSON object. The load generator runs on the same machine:
both phases share the cores with it alike.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import os
import random
import resource
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from presence_svc.auth import TokenCodec
from presence_svc.bench.machine import machine
from presence_svc.bench.runner import child_env, free_port, python_argv, started_process
from presence_svc.settings import Settings

SECRET = "overload-benchmark-secret-0123456789abcdef0123"
USERS = 5000
ARTIFACTS = 500
NORMAL_CONNECTIONS = 64
POOL = 2000
PROBE = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def heartbeat_requests(port: int) -> list[bytes]:
    codec = TokenCodec(SECRET)
    requests = []
    for n in range(USERS):
        token = codec.issue(f"user-{n:07d}", ttl_s=3600)
        body = json.dumps(
            {
                "artifactId": f"doc-{n % ARTIFACTS:07d}",
                "sessionId": f"tab-{n:08d}",
                "state": {"page": 1},
            }
        ).encode()
        head = (
            f"POST /v1/heartbeat HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    random.Random(17).shuffle(requests)
    return requests


@dataclass
class Tally:
    latencies: dict[int, array.array[float]] = field(default_factory=dict)
    failed: int = 0
    unsent: int = 0
    reconnects: int = 0
    connect_failed: int = 0

    def add(self, status: int, seconds: float) -> None:
        self.latencies.setdefault(status, array.array("d")).append(seconds)


class Connection(asyncio.Protocol):
    """One keep-alive connection, one request at a time; parses only the status line and
    Content-Length of each answer."""

    def __init__(self, on_free: Any) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.sent_at = 0.0
        self.tally: Tally | None = None
        self.on_free = on_free
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, request: bytes, tally: Tally, at: float | None = None) -> None:
        """``at``: when the client wanted to send it (before connecting, if it had to)."""
        assert self.transport is not None
        self.tally = tally
        self.sent_at = time.perf_counter() if at is None else at
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"content-length:")
        stop = head.find(b"\r\n", at)
        length = int(head[at + 15 : stop if stop >= 0 else len(head)])
        if len(self.buffer) < end + 4 + length:
            return
        status = int(self.buffer[9:12])
        del self.buffer[: end + 4 + length]
        if b"\r\nconnection: close" in head:  # not to be used again: a new one next time
            self.lost = True
            if self.transport is not None:
                self.transport.close()
        tally, self.tally = self.tally, None
        if tally is not None:
            tally.add(status, time.perf_counter() - self.sent_at)
        self.on_free(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.tally is not None:
            self.tally.failed += 1
            self.tally = None
            self.on_free(self)  # its client connects again for its next request


async def connect(port: int, count: int, on_free: Any) -> list[Connection]:
    loop = asyncio.get_running_loop()
    out: list[Connection] = []
    for start in range(0, count, 200):
        made = await asyncio.gather(
            *(
                loop.create_connection(lambda: Connection(on_free), "127.0.0.1", port)
                for _ in range(min(200, count - start))
            )
        )
        out.extend(protocol for _, protocol in made)
    return out


async def closed_loop(port: int, requests: list[bytes], seconds: float) -> tuple[Tally, float]:
    """Each of ``NORMAL_CONNECTIONS`` sends its next request as soon as it is answered."""
    tally = Tally()
    cycle = iter(range(1 << 62))
    stop_at = 0.0
    done: set[Connection] = set()
    all_done = asyncio.Event()

    def free(conn: Connection) -> None:
        if time.perf_counter() < stop_at and not conn.lost:
            conn.send(requests[next(cycle) % len(requests)], tally)
        else:
            done.add(conn)
            if len(done) == NORMAL_CONNECTIONS:
                all_done.set()

    conns = await connect(port, NORMAL_CONNECTIONS, free)
    started = time.perf_counter()
    stop_at = started + seconds
    for conn in conns:
        conn.send(requests[next(cycle) % len(requests)], tally)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_done.wait(), seconds + 30)
    elapsed = time.perf_counter() - started
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    return tally, elapsed


async def reconnect(
    port: int,
    free: Any,
    idle: list[Connection],
    opened: list[Connection],
    request: bytes,
    tally: Tally,
    at: float,
) -> None:
    """A client whose connection the server closed (``Connection: close``) connects again
    to send: the time to connect, a handshake waiting in the listen backlog included, counts
    in the request's latency (from ``at``); a failure to connect is ``failed``."""
    loop = asyncio.get_running_loop()
    try:
        _, conn = await loop.create_connection(lambda: Connection(free), "127.0.0.1", port)
    except OSError:
        tally.failed += 1
        tally.connect_failed += 1
        dead = Connection(free)
        dead.lost = True  # it tries again for its next request
        idle.append(dead)
        return
    tally.reconnects += 1
    opened.append(conn)
    conn.send(request, tally, at)


async def open_loop(port: int, requests: list[bytes], rate: float, seconds: float) -> Tally:
    """Arrivals at ``rate`` per second on a fixed schedule, each on a free connection."""
    tally = Tally()
    idle: list[Connection] = []
    ending = False
    drained = asyncio.Event()

    warmed = asyncio.Event()

    def free(conn: Connection) -> None:
        idle.append(conn)
        if len(idle) == (slots if ending else len(conns)):
            (drained if ending else warmed).set()

    slots = POOL
    conns = await connect(port, POOL, free)
    # One answered probe on each first: a connection the client counts as open may still be
    # a dropped handshake on the server's side (a listen backlog overflowed while the pool
    # connected), and its requests would wait out the retransmissions unseen by the server.
    warm = Tally()
    for conn in conns:
        conn.send(PROBE, warm)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(warmed.wait(), 60)
    idle[:] = [conn for conn in conns if conn.tally is None and not conn.lost]
    slots = len(idle)
    loop = asyncio.get_running_loop()
    connecting: set[asyncio.Task[None]] = set()

    started = time.perf_counter()
    sent = 0
    n = 0
    while (now := time.perf_counter()) < started + seconds:
        due = int((now - started) * rate) - sent
        for _ in range(due):
            sent += 1
            if not idle:
                tally.unsent += 1
                continue
            request = requests[n % len(requests)]
            n += 1
            conn = idle.pop()
            if conn.lost:
                at = time.perf_counter()
                task = loop.create_task(reconnect(port, free, idle, conns, request, tally, at))
                connecting.add(task)
                task.add_done_callback(connecting.discard)
            else:
                conn.send(request, tally)
        await asyncio.sleep(0.001)
    ending = True  # let the outstanding ones finish (measured too)
    if len(idle) < slots:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(drained.wait(), 30)
    for conn in conns:  # the reconnected ones too
        if conn.transport is not None:
            conn.transport.close()
    return tally


def percentile_ms(values: array.array[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


async def sample_rss(pid: int, samples: list[tuple[float, str, float]], phase: list[str]) -> None:
    started = time.perf_counter()
    while True:
        with contextlib.suppress(OSError):
            samples.append((round(time.perf_counter() - started, 2), phase[0], rss_mib(pid)))
        await asyncio.sleep(0.25)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def round_figures(normal: Tally, elapsed: float, over: Tally, seconds: float) -> dict[str, Any]:
    """One round: the closed loop's rate and latency, then the open loop's at ``factor``
    times that rate, and the accepted p99 against the closed loop's p99."""
    ok = normal.latencies.get(200, array.array("d"))
    accepted = over.latencies.get(200, array.array("d"))
    answered = sum(len(v) for v in over.latencies.values())
    offered = answered + over.failed + over.unsent
    normal_p99 = percentile_ms(ok, 0.99)
    accepted_p99 = percentile_ms(accepted, 0.99)
    return {
        "capacity_rps": round(len(ok) / elapsed),
        "capacity_p50_ms": percentile_ms(ok, 0.5),
        "capacity_p99_ms": normal_p99,
        "capacity_errors": sum(len(v) for s, v in normal.latencies.items() if s != 200),
        "offered_rps": round(offered / seconds),
        "accepted_rps": round(len(accepted) / seconds),
        "accepted_p50_ms": percentile_ms(accepted, 0.5),
        "accepted_p99_ms": accepted_p99,
        "accepted_p99_vs_capacity_p99": (
            round(accepted_p99 / normal_p99, 2) if accepted_p99 and normal_p99 else None
        ),
        # p90 too: on a shared machine the p99 is often a stall of the whole process
        "accepted_p90_vs_capacity_p90": _ratio(
            percentile_ms(accepted, 0.9), percentile_ms(ok, 0.9)
        ),
        "rejected_503_share": round(len(over.latencies.get(503, [])) / max(1, offered), 3),
        "rejected_p99_ms": percentile_ms(over.latencies.get(503, array.array("d")), 0.99),
        "other_statuses": {
            str(s): len(v) for s, v in over.latencies.items() if s not in (200, 503)
        },
        "failed_connections": over.failed,
        "reconnects": over.reconnects,
        "connect_failed": over.connect_failed,
        "unsent_share": round(over.unsent / max(1, offered), 3),
    }


async def run(
    port: int,
    pid: int,
    seconds: float,
    factor: float,
    rounds: int,
    settings: dict[str, str],
    bare_port: int | None = None,
    bare_pid: int | None = None,
) -> dict[str, Any]:
    requests = heartbeat_requests(port)
    samples: list[tuple[float, str, float]] = []
    phase = ["warmup"]
    sampler = asyncio.create_task(sample_rss(pid, samples, phase))
    lags: dict[str, list[float]] = {}
    lag_sampler = asyncio.create_task(sample_lag(lags, phase))
    await closed_loop(port, requests, 3)  # every user's session exists, caches are warm
    results = []
    redis = children(pid)
    for _ in range(rounds):  # normal then overload, again: each ratio within one round
        phase[0] = "capacity"
        lags.clear()
        cpu_before, own_before = cpu_s(pid), own_cpu_s()
        busy_before, own_busy_before = busy_s(pid), busy_s("self")
        redis_before, softirq_before = busy_all_s(redis), softirq_wait_s()
        handler_before = await handler_seconds(port)
        tcp_before = tcp_counters()
        normal, elapsed = await closed_loop(port, requests, seconds)
        cpu_normal, own_normal = cpu_s(pid) - cpu_before, own_cpu_s() - own_before
        busy_normal = busy_s(pid) - busy_before
        own_busy_normal = busy_s("self") - own_busy_before
        redis_normal = busy_all_s(redis) - redis_before
        softirq_normal = softirq_wait_s() - softirq_before
        tcp_normal = _delta(tcp_counters(), tcp_before)
        handler_normal = _mean_ms(await handler_seconds(port), handler_before)
        capacity_rps = len(normal.latencies.get(200, ())) / elapsed
        phase[0] = "overload"
        cpu_before, own_before = cpu_s(pid), own_cpu_s()
        busy_before, own_busy_before = busy_s(pid), busy_s("self")
        redis_before, softirq_before = busy_all_s(redis), softirq_wait_s()
        handler_before = await handler_seconds(port)
        tcp_before = tcp_counters()
        over_started = time.perf_counter()
        over = await open_loop(port, requests, capacity_rps * factor, seconds)
        over_elapsed = time.perf_counter() - over_started  # with the drain
        cpu_over, own_over = cpu_s(pid) - cpu_before, own_cpu_s() - own_before
        busy_over = busy_s(pid) - busy_before
        own_busy_over = busy_s("self") - own_busy_before
        redis_over = busy_all_s(redis) - redis_before
        softirq_over = softirq_wait_s() - softirq_before
        tcp_over = _delta(tcp_counters(), tcp_before)
        handler_over = _mean_ms(await handler_seconds(port), handler_before)
        figures = round_figures(normal, elapsed, over, seconds)
        answers = sum(len(v) for v in over.latencies.values())
        figures["server_cpu_us_per_answer_overload"] = round(cpu_over / max(1, answers) * 1e6, 1)
        figures["server_cpu_us_per_answer_capacity"] = round(
            cpu_normal / max(1, sum(len(v) for v in normal.latencies.values())) * 1e6, 1
        )
        # The serve process's share of a core in each phase: a starved server (the load
        # generator or a neighbour took its CPU) shows here, not in the latencies.
        figures["server_cpu_share_capacity"] = round(cpu_normal / elapsed, 2)
        figures["server_cpu_share_overload"] = round(cpu_over / seconds, 2)
        figures["loadgen_cpu_share_capacity"] = round(own_normal / elapsed, 2)
        figures["loadgen_cpu_share_overload"] = round(own_over / seconds, 2)
        # Running or waiting to run, as a share of the phase: near 1, that side was the
        # bottleneck (a load generator near 1 measures its own delays too).
        figures["server_busy_capacity"] = round(busy_normal / elapsed, 2)
        figures["server_busy_overload"] = round(busy_over / over_elapsed, 2)
        figures["loadgen_busy_capacity"] = round(own_busy_normal / elapsed, 2)
        figures["loadgen_busy_overload"] = round(own_busy_over / over_elapsed, 2)
        figures["redis_busy_capacity"] = round(redis_normal / elapsed, 2)
        figures["redis_busy_overload"] = round(redis_over / over_elapsed, 2)
        figures["tcp_capacity"] = tcp_normal  # machine-wide: neighbours' drops count too
        figures["tcp_overload"] = tcp_over
        figures["handler_mean_ms_capacity"] = handler_normal
        figures["handler_mean_ms_overload"] = handler_over
        figures["softirq_wait_share_capacity"] = round(softirq_normal / elapsed, 2)
        figures["softirq_wait_share_overload"] = round(softirq_over / over_elapsed, 2)
        for name in ("capacity", "overload"):
            late = array.array("d", lags.get(name, ()))
            figures[f"loadgen_lag_p99_ms_{name}"] = percentile_ms(late, 0.99)
        if bare_port is not None:
            # the same arrivals against a server that only answers a canned 503: what the
            # machine lets through at this rate with no service in the way
            phase[0] = "bare"
            bare_cpu_before = cpu_s(bare_pid) if bare_pid else 0.0
            bare = await open_loop(bare_port, requests, capacity_rps * factor, seconds)
            answered = bare.latencies.get(503, array.array("d"))
            if bare_pid:
                # what answering one canned 503 costs with nothing else in the process: the
                # kernel's share (read, write, the peer's receive on loopback) is most of it
                figures["bare_cpu_us_per_answer"] = round(
                    (cpu_s(bare_pid) - bare_cpu_before) / max(1, len(answered)) * 1e6, 1
                )
            figures["bare_p50_ms"] = percentile_ms(answered, 0.5)
            figures["bare_p99_ms"] = percentile_ms(answered, 0.99)
            figures["bare_p99_vs_capacity_p99"] = _ratio(
                figures["bare_p99_ms"], figures["capacity_p99_ms"]
            )
            offered = len(answered) + bare.failed + bare.unsent
            figures["bare_unsent_share"] = round(bare.unsent / max(1, offered), 3)
            figures["loadgen_lag_p99_ms_bare"] = percentile_ms(
                array.array("d", lags.get("bare", ())), 0.99
            )
        results.append(figures)
    phase[0] = "after"
    await asyncio.sleep(1)
    sampler.cancel()
    lag_sampler.cancel()
    refusals = await scrape_refusals(port)
    rss = {p: [s[2] for s in samples if s[1] == p] for p in ("capacity", "overload")}
    ratios = [r["accepted_p99_vs_capacity_p99"] for r in results]
    known = sorted(r for r in ratios if r is not None)
    return {
        "benchmark": "overload",
        "machine": machine(),
        "settings": settings,
        **results[len(results) // 2],  # a round's figures, for the one-round case
        "ratio_per_round": ratios,
        "ratio_median": known[len(known) // 2] if known else None,
        "rounds": results,
        **refusals,
        "rss_mib_capacity_first": rss["capacity"][0] if rss["capacity"] else None,
        "rss_mib_capacity_end": rss["capacity"][-1] if rss["capacity"] else None,
        "rss_mib_overload_max": max(rss["overload"], default=None),
        "rss_mib_overload_end": rss["overload"][-1] if rss["overload"] else None,
        "rss_mib_samples": [s[2] for s in samples if s[1] in ("capacity", "overload")][::4],
    }


async def scrape_refusals(port: int) -> dict[str, float]:
    """Refusals counted by the service: all of them, and those that reached a route (the
    rest were answered before aiohttp parsed them)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    text = (await reader.read()).decode()
    writer.close()
    total = routed = 0.0
    for line in text.splitlines():
        if line.startswith(
            (
                'presence_overload_rejected_total{reason="requests"}',
                'presence_overload_rejected_total{reason="lag"}',
            )
        ):
            total += float(line.split()[-1])
        elif line.startswith("presence_http_requests_total{") and 'status="503"' in line:
            routed += float(line.split()[-1])
    return {"refused_total": total, "refused_after_routing": routed}


def busy_s(pid: int | str) -> float:
    """Seconds the main thread of ``pid`` ran or waited to run (``/proc/<pid>/schedstat``):
    near the wall time, it was the bottleneck; well below, it waited for input."""
    run_ns, wait_ns = Path(f"/proc/{pid}/schedstat").read_text().split()[:2]
    return (int(run_ns) + int(wait_ns)) / 1e9


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (its embedded Redis)."""
    with contextlib.suppress(OSError):
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


def busy_all_s(pids: list[int]) -> float:
    total = 0.0
    for child in pids:
        with contextlib.suppress(OSError):
            total += busy_s(child)
    return total


def softirq_wait_s() -> float:
    """Seconds the kernel's softirq threads (``ksoftirqd/N``) waited for a CPU: loopback
    packets past the inline budget are processed there, so while they wait, requests and
    answers sit in socket queues with neither process busy (seen on a crowded host)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if "(ksoftirqd/" in stat.read_text():
                total += int((stat.parent / "schedstat").read_text().split()[1]) / 1e9
    return total


_TCP_COUNTERS = (
    "RetransSegs",
    "TCPTimeouts",
    "PruneCalled",
    "TCPRcvQDrop",
    "TCPBacklogDrop",
    "ListenOverflows",
)


def tcp_counters() -> dict[str, int]:
    """The kernel's TCP counters that say a segment was dropped or retransmitted (machine
    wide, ``/proc/net/snmp`` and ``/proc/net/netstat``): on loopback a drop costs a
    retransmission timeout, 200 ms at least, which no process's CPU shows."""
    found: dict[str, int] = {}
    for name in ("snmp", "netstat"):
        with contextlib.suppress(OSError):
            lines = Path(f"/proc/net/{name}").read_text().splitlines()
            for head, values in zip(lines[::2], lines[1::2], strict=False):
                for key, value in zip(head.split()[1:], values.split()[1:], strict=False):
                    if key in _TCP_COUNTERS:
                        found[key] = int(value)
    return found


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items()}


async def sample_lag(lags: dict[str, list[float]], phase: list[str]) -> None:
    """The load generator's own lateness: answers it reads late are counted late, so a
    starved load generator shows here rather than as the server's latency."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time()
        await asyncio.sleep(0.005)
        lags.setdefault(phase[0], []).append(loop.time() - asked - 0.005)


async def handler_seconds(port: int) -> tuple[float, float]:
    """The heartbeat handler's time so far, summed, and its count (``/metrics``): the time
    an answered request spent in the service from its handler's start (the rest of what the
    client sees is waiting in front of it: socket buffers, the loop's turns, the network)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    text = (await reader.read()).decode()
    writer.close()
    total = count = 0.0
    for line in text.splitlines():
        if 'route="/v1/heartbeat"' in line and line.startswith("presence_http_request_seconds"):
            if line.startswith("presence_http_request_seconds_sum"):
                total = float(line.split()[-1])
            elif line.startswith("presence_http_request_seconds_count"):
                count = float(line.split()[-1])
    return total, count


def _mean_ms(after: tuple[float, float], before: tuple[float, float]) -> float | None:
    count = after[1] - before[1]
    return round((after[0] - before[0]) / count * 1000, 2) if count else None


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def hold(port: int, requests: list[bytes], count: int) -> list[asyncio.StreamWriter]:
    """``count`` requests sent but for their last body byte: as many handlers in flight."""
    held = []
    for n in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(requests[n][:-1])
        held.append(writer)
    await asyncio.sleep(1)  # the handlers have started and wait for the body
    return held


async def refusal_cost(
    port: int, pid: int, seconds: float, cap: int, settings: dict[str, str]
) -> dict[str, Any]:
    """Server CPU per answer, same process and run: heartbeats answered, then heartbeats
    refused (``cap`` requests held in flight so that every other one is refused)."""
    requests = heartbeat_requests(port)
    await closed_loop(port, requests, 3)  # warm
    figures: dict[str, Any] = {"benchmark": "overload-refusal-cost", "settings": settings}
    for name in ("answered", "refused", "answered_again", "refused_again"):
        held = await hold(port, requests, cap) if name.startswith("refused") else []
        before = cpu_s(pid)
        tally, elapsed = await closed_loop(port, requests, seconds)
        used = cpu_s(pid) - before
        answers = sum(len(v) for v in tally.latencies.values())
        figures[name] = {
            "statuses": {str(s): len(v) for s, v in tally.latencies.items()},
            "rps": round(answers / elapsed),
            "server_cpu_us_per_answer": round(used / max(1, answers) * 1e6, 1),
        }
        for writer in held:
            writer.close()
        await asyncio.sleep(1)
    figures["refusal_vs_heartbeat_cpu"] = round(
        (
            figures["refused"]["server_cpu_us_per_answer"]
            + figures["refused_again"]["server_cpu_us_per_answer"]
        )
        / (
            figures["answered"]["server_cpu_us_per_answer"]
            + figures["answered_again"]["server_cpu_us_per_answer"]
        ),
        3,
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase")
    parser.add_argument("--factor", type=float, default=3.0, help="overload / capacity")
    parser.add_argument(
        "--rounds", type=int, default=1, help="normal then overload, this many times"
    )
    parser.add_argument("--max-inflight", type=int, help="PRESENCE_MAX_INFLIGHT of serve")
    parser.add_argument("--max-loop-lag-ms", type=int, help="PRESENCE_MAX_LOOP_LAG_MS of serve")
    parser.add_argument("--listen-backlog", type=int, help="PRESENCE_LISTEN_BACKLOG of serve")
    parser.add_argument(
        "--target-lag-ms", type=int, help="PRESENCE_TARGET_LAG_MS of serve (0: fixed cap)"
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="serve (and its Redis) on CPU 0, the load generator on CPU 1: neither starves "
        "the other",
    )
    parser.add_argument(
        "--nice",
        type=int,
        help="run serve (and its Redis) and the load generator at this niceness (negative "
        "needs root): on a machine shared with other jobs, both get the CPU first, as on a "
        "quiet machine",
    )
    parser.add_argument(
        "--no-bare",
        action="store_true",
        help="skip the bare baseline (after each overload phase, the same arrivals against "
        "benchmarks/bare_server.py, which answers a canned 503 and does nothing else)",
    )
    parser.add_argument(
        "--refusal-cost",
        action="store_true",
        help="instead: server CPU per refused heartbeat against per answered one",
    )
    args = parser.parse_args()
    extra = {}
    if args.max_inflight is not None:
        extra["PRESENCE_MAX_INFLIGHT"] = str(args.max_inflight)
    if args.max_loop_lag_ms is not None:
        extra["PRESENCE_MAX_LOOP_LAG_MS"] = str(args.max_loop_lag_ms)
    if args.listen_backlog is not None:
        extra["PRESENCE_LISTEN_BACKLOG"] = str(args.listen_backlog)
    if args.target_lag_ms is not None:
        extra["PRESENCE_TARGET_LAG_MS"] = str(args.target_lag_ms)
    with tempfile.TemporaryDirectory(prefix="overload-bench-") as tmp:
        port = free_port()
        env = child_env(
            PRESENCE_DATA_DIR=str(Path(tmp) / "data"),
            PRESENCE_JWT_SECRET=SECRET,
            PRESENCE_ONLINE_TIMEOUT_S="600",
            PRESENCE_LOG_LEVEL="warning",
            **extra,
        )
        argv = python_argv("-m", "presence_svc", "serve", "--port", str(port))
        if args.pin:
            argv = ["taskset", "-c", "0", *argv]  # exec'd in place: the pid stays serve's
            os.sched_setaffinity(0, {1})
            extra["pinned"] = "serve+redis on cpu 0, load generator on cpu 1"
        if args.nice is not None:
            argv = ["nice", "-n", str(args.nice), *argv]  # exec'd in place too
            extra["nice"] = str(args.nice)
        with started_process(argv, port=port, ready_path="/readyz", env=env) as server:
            if args.nice is not None:
                os.nice(args.nice)  # after the start: serve's niceness is not added to it
            with contextlib.suppress(ImportError):
                import uvloop

                uvloop.install()
            with contextlib.ExitStack() as stack:
                bare_port = bare_pid = None
                if not args.no_bare and not args.refusal_cost:
                    bare_port = free_port()
                    bare_argv = python_argv(str(Path(__file__).with_name("bare_server.py")))
                    if args.pin:
                        bare_argv = ["taskset", "-c", "0", *bare_argv]
                    # (started after ``os.nice``: it runs at the load generator's niceness)
                    bare_pid = stack.enter_context(
                        started_process(
                            [*bare_argv, str(bare_port)], port=bare_port, ready_path="/readyz"
                        )
                    ).pid
                if args.refusal_cost:
                    cap = args.max_inflight or Settings().max_inflight
                    job = refusal_cost(port, server.pid, args.seconds, cap, extra)
                else:
                    job = run(
                        port,
                        server.pid,
                        args.seconds,
                        args.factor,
                        args.rounds,
                        extra,
                        bare_port,
                        bare_pid,
                    )
                result = asyncio.run(job)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
