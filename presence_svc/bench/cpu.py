"""CPU per request of each part of a measurement, and the ratio the machine allows.

On a machine whose cores the server processes, Redis and the load generator share, a run
that keeps the cores busy answers ``cores / (CPU seconds per request of everything)``
requests a second. The service pays its Python, its Redis and the load generator; the
bare-aiohttp baseline pays its handler and the load generator. So the ratio of the two
runs is bounded by their CPU per request, whatever the code does with its waiting:

* ``cpu_bound_ratio``: the ratio were both runs CPU-bound on the same cores,
  ``(baseline + its load generator) / (python + redis + load generator)``;
* ``ceiling_ratio``: the same with the service's Python as cheap as the bare handler,
  ``(baseline + its load generator) / (baseline + redis + load generator)``: the best a
  service that also runs Redis on these cores can reach, however lean its Python.

Everything is read at the start and the end of the measured part only (the load
processes' barrier; all their results in), not over the warm-up.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import redis

from presence_svc.bench.runner import cpu_seconds

__all__ = [
    "CpuPerRequest",
    "Sample",
    "Sampler",
    "baseline_sampler",
    "ceiling_ratio",
    "cores_used",
    "cpu_bound_ratio",
    "per_request_us",
    "redis_cpu_seconds",
    "service_sampler",
]

Sample = dict[str, float | None]
"""CPU seconds so far of each part (``python``, ``redis``, ``server``); None: unreadable."""
Sampler = Callable[[], Sample]


def per_request_us(cpu_s: float | None, requests: int) -> float | None:
    """``cpu_s`` seconds spread over ``requests``, in µs; None when either is unknown."""
    if cpu_s is None or requests <= 0:
        return None
    return cpu_s / requests * 1e6


def cpu_bound_ratio(
    baseline_us: float | None,
    baseline_loadgen_us: float | None,
    python_us: float | None,
    redis_us: float | None,
    loadgen_us: float | None,
) -> float | None:
    """The service's req/s over the baseline's, were both CPU-bound on the same cores."""
    if (
        baseline_us is None
        or baseline_loadgen_us is None
        or python_us is None
        or redis_us is None
        or loadgen_us is None
    ):
        return None
    service = python_us + redis_us + loadgen_us
    return (baseline_us + baseline_loadgen_us) / service if service > 0 else None


def ceiling_ratio(
    baseline_us: float | None,
    baseline_loadgen_us: float | None,
    redis_us: float | None,
    loadgen_us: float | None,
) -> float | None:
    """The best ratio this machine allows a service that runs Redis on the same cores: its
    Python as cheap per request as the bare handler's, its Redis and load generator as
    measured."""
    return cpu_bound_ratio(baseline_us, baseline_loadgen_us, baseline_us, redis_us, loadgen_us)


@dataclass(frozen=True, slots=True)
class CpuPerRequest:
    """µs of CPU per request of each part, measured part only (None: not measured)."""

    python_us: float | None
    """The service's Python processes (``serve`` and its children, its Redis left out)."""
    redis_us: float | None
    """The service's redis-server (``INFO cpu``: ``used_cpu_sys + used_cpu_user``)."""
    loadgen_us: float | None
    """The load generator while it drove the service."""
    baseline_us: float | None
    """The bare-aiohttp baseline's processes."""
    baseline_loadgen_us: float | None
    """The load generator while it drove the baseline."""
    cores_used: float | None
    """Python, Redis and the load generator's CPU over the service's measured seconds:
    how many cores the service's run kept busy."""
    baseline_cores_used: float | None
    """The baseline's and its load generator's CPU over the baseline's measured seconds."""

    @property
    def cpu_bound_ratio(self) -> float | None:
        return cpu_bound_ratio(
            self.baseline_us,
            self.baseline_loadgen_us,
            self.python_us,
            self.redis_us,
            self.loadgen_us,
        )

    @property
    def ceiling_ratio(self) -> float | None:
        return ceiling_ratio(
            self.baseline_us, self.baseline_loadgen_us, self.redis_us, self.loadgen_us
        )

    def as_dict(self) -> dict[str, Any]:
        """The bench's JSON fields (µs to 0.1, ratios and cores to 0.001)."""

        def rounded(value: float | None, digits: int) -> float | None:
            return None if value is None else round(value, digits)

        return {
            "python_cpu_us": rounded(self.python_us, 1),
            "redis_cpu_us": rounded(self.redis_us, 1),
            "loadgen_cpu_us": rounded(self.loadgen_us, 1),
            "baseline_cpu_us": rounded(self.baseline_us, 1),
            "baseline_loadgen_cpu_us": rounded(self.baseline_loadgen_us, 1),
            "cores_used": rounded(self.cores_used, 3),
            "baseline_cores_used": rounded(self.baseline_cores_used, 3),
            "cpu_bound_ratio": rounded(self.cpu_bound_ratio, 3),
            "ceiling_ratio": rounded(self.ceiling_ratio, 3),
        }


def cores_used(parts_us: list[float | None], requests: int, seconds: float) -> float | None:
    """The cores ``parts_us`` (µs per request each) kept busy over ``seconds``."""
    if any(part is None for part in parts_us) or seconds <= 0:
        return None
    return sum(part or 0.0 for part in parts_us) * requests / 1e6 / seconds


def redis_cpu_seconds(client: redis.Redis) -> float | None:
    """The Redis server's own CPU so far (all its threads; not its forked children)."""
    try:
        info = client.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    except (redis.RedisError, OSError, KeyError, ValueError):
        return None


@contextlib.contextmanager
def service_sampler(pid: int | None, redis_url: str | None) -> Iterator[Sampler]:
    """A function reading the service's ``python`` and ``redis`` CPU seconds so far: the
    ``serve`` process tree with its Redis left out (by the pid Redis reports), and Redis's
    own ``INFO cpu``. Each part is None where it cannot be read (``--url``: no pid)."""
    client: redis.Redis | None = None
    redis_pid: int | None = None
    if redis_url:
        try:
            client = redis.Redis.from_url(redis_url)
            redis_pid = int(client.info("server")["process_id"])
        except (redis.RedisError, OSError, KeyError, ValueError):
            client = None

    def sample() -> Sample:
        excluded = frozenset({redis_pid}) if redis_pid is not None else frozenset()
        return {
            "python": cpu_seconds(pid, excluded) if pid else None,
            "redis": redis_cpu_seconds(client) if client is not None else None,
        }

    try:
        yield sample
    finally:
        if client is not None:
            client.close()


def baseline_sampler(pid: int | None) -> Sampler:
    """A function reading the baseline's processes' CPU seconds so far (``server``)."""

    def sample() -> Sample:
        return {"server": cpu_seconds(pid) if pid else None}

    return sample
