"""The bench's CPU split (``bench.cpu``): each part's CPU per request over the measured
part only, Redis apart from the Python processes, and the ratios computed from them."""

from __future__ import annotations

import os
import time

import pytest
import redis

from presence_svc.bench.command import cpu_per_request
from presence_svc.bench.cpu import (
    CpuPerRequest,
    baseline_sampler,
    ceiling_ratio,
    cores_used,
    cpu_bound_ratio,
    per_request_us,
    service_sampler,
)
from presence_svc.bench.report import Row
from presence_svc.bench.runner import (
    Measurement,
    Options,
    cpu_seconds,
    free_port,
    measure,
    probe,
    python_argv,
    started_process,
)


def test_ceiling_gives_the_service_the_bare_handlers_python() -> None:
    # baseline 25 + its load generator 10 = 35 µs; service: bare 25 + Redis 20 + 10
    assert ceiling_ratio(25.0, 10.0, 20.0, 10.0) == pytest.approx(35 / 55)
    assert cpu_bound_ratio(25.0, 10.0, 60.0, 20.0, 10.0) == pytest.approx(35 / 90)
    # no Redis, the same Python: the ceiling is 1
    assert ceiling_ratio(25.0, 10.0, 0.0, 10.0) == pytest.approx(1.0)
    assert ceiling_ratio(None, 10.0, 20.0, 10.0) is None
    assert cpu_bound_ratio(25.0, 10.0, None, 20.0, 10.0) is None


def test_per_request_and_cores_used() -> None:
    assert per_request_us(2.0, 100_000) == pytest.approx(20.0)
    assert per_request_us(None, 100_000) is None
    assert per_request_us(1.0, 0) is None
    # 100 000 requests of 60 + 20 + 20 µs in 5 s: 10 s of CPU, 2 cores
    assert cores_used([60.0, 20.0, 20.0], 100_000, 5.0) == pytest.approx(2.0)
    assert cores_used([60.0, None], 100_000, 5.0) is None


def _measurement(requests: int, seconds: float, loadgen_s: float, **cpu_s: float) -> Measurement:
    return Measurement(
        requests=requests,
        errors=0,
        seconds=seconds,
        rps=requests / seconds,
        p50_ms=1.0,
        p99_ms=2.0,
        loadgen_cpu=0.5,
        statuses={200: requests},
        loadgen_cpu_s=loadgen_s,
        cpu_s=dict(cpu_s),
    )


def test_a_rows_fields_from_known_measurements() -> None:
    service = _measurement(100_000, 5.0, 1.0, python=6.0, redis=2.0)
    baseline = _measurement(200_000, 5.0, 1.6, server=5.0)
    cpu = cpu_per_request(service, baseline)
    assert cpu == CpuPerRequest(
        python_us=60.0,
        redis_us=20.0,
        loadgen_us=10.0,
        baseline_us=25.0,
        baseline_loadgen_us=8.0,
        cores_used=pytest.approx(1.8),
        baseline_cores_used=pytest.approx(1.32),
    )
    fields = Row(
        "heartbeat", 64, 100_000, 0, 20_000.0, 1.0, 2.0, 40_000.0, 2.5, 60, 0.5, None, 0, cpu=cpu
    ).as_dict()
    assert fields["python_cpu_us"] == 60.0
    assert fields["redis_cpu_us"] == 20.0
    assert fields["loadgen_cpu_us"] == 10.0
    assert fields["baseline_cpu_us"] == 25.0
    assert fields["baseline_loadgen_cpu_us"] == 8.0
    assert fields["cores_used"] == 1.8
    assert fields["baseline_cores_used"] == 1.32
    assert fields["cpu_bound_ratio"] == round(33 / 90, 3)
    assert fields["ceiling_ratio"] == round(33 / 55, 3)
    assert fields["ratio"] == 0.5  # the existing fields as they were


def test_a_row_without_a_baseline_has_no_ratios() -> None:
    cpu = cpu_per_request(_measurement(1000, 1.0, 0.01, python=0.05, redis=0.02), None)
    assert cpu.python_us == pytest.approx(50.0)
    assert cpu.baseline_us is None
    assert cpu.ceiling_ratio is None
    assert cpu.cpu_bound_ratio is None


def test_redis_cpu_is_counted_apart_from_the_python_processes(redis_url: str) -> None:
    """The test's Redis is this process's child, as the embedded one is ``serve``'s: its
    CPU goes to ``redis`` and not to ``python``."""
    client = redis.Redis.from_url(redis_url)
    redis_pid = int(client.info("server")["process_id"])
    assert redis_pid in _descendants(os.getpid())
    busy = "local x = 0 for i = 1, tonumber(ARGV[1]) do x = x + i end return 1"
    with service_sampler(os.getpid(), redis_url) as sample:
        before = sample()
        deadline = time.monotonic() + 30  # until Redis burnt 0.2 s, however busy the machine
        while (sample()["redis"] or 0) - (before["redis"] or 0) < 0.2:
            assert time.monotonic() < deadline
            client.eval(busy, 0, 2_000_000)
        after = sample()
    client.close()
    redis_s = (after["redis"] or 0) - (before["redis"] or 0)
    python_s = (after["python"] or 0) - (before["python"] or 0)
    assert redis_s >= 0.2
    assert python_s < redis_s / 2
    # the whole tree, as ``server_cpu_us`` counts it, has Redis in it
    everything = cpu_seconds(os.getpid()) or 0
    assert everything - (cpu_seconds(os.getpid(), frozenset({redis_pid})) or 0) > 0.15


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as listed:
            for child in listed.read().split():
                found |= {int(child)} | _descendants(int(child))
    return found


@pytest.mark.timeout(120)
def test_measure_samples_the_measured_part_only() -> None:
    """``sample`` is read when the load processes leave the barrier and when their results
    are in: its difference spans the measured seconds, not the processes' start or the
    warm-up."""
    port = free_port()
    argv = python_argv("-m", "presence_svc.bench.baseline", "--port", str(port), "--kind", "raw")
    with started_process(argv, port=port, ready_path="/", wait_s=30) as server:
        request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
        assert probe("127.0.0.1", port, request)[0] == 200
        options = Options(connections=2, duration_s=1.0, max_requests=10**9, warmup=200)
        clock = baseline_sampler(server.pid)
        result = measure(
            "127.0.0.1",
            port,
            [request],
            options,
            sample=lambda: {"wall": time.monotonic(), **clock()},
        )
    wall = result.cpu_s["wall"]
    assert wall is not None
    assert result.seconds <= wall < result.seconds + 0.5
    assert result.cpu_s["server"] is not None
    assert 0 < result.cpu_s["server"] <= wall * 1.2  # one process, at most a core
    assert 0 < result.loadgen_cpu_s <= wall * 1.2
