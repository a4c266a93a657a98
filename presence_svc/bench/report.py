"""Benchmark output: a table for people, one JSON object per line with ``--json``, and a
live progress line on stderr when it is a terminal."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, TextIO

import msgspec

from presence_svc.bench.cpu import CpuPerRequest
from presence_svc.bench.machine import machine_line

__all__ = [
    "Progress",
    "Round",
    "Row",
    "combine_rounds",
    "print_json",
    "print_json_line",
    "print_table",
]


@dataclass(frozen=True, slots=True)
class Round:
    """One round of ``--rounds``: the baseline measured, then the service."""

    rps: float
    baseline_rps: float | None
    p99_ms: float
    baseline_p99_ms: float | None

    @property
    def ratio(self) -> float | None:
        return round(self.rps / self.baseline_rps, 3) if self.baseline_rps else None

    @property
    def p99_ratio(self) -> float | None:
        if not self.baseline_p99_ms:
            return None
        return round(self.p99_ms / self.baseline_p99_ms, 2)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rps": round(self.rps, 1),
            "baseline_rps": round(self.baseline_rps, 1) if self.baseline_rps else None,
            "ratio": self.ratio,
            "p99_ms": round(self.p99_ms, 3),
            "baseline_p99_ms": (
                round(self.baseline_p99_ms, 3) if self.baseline_p99_ms is not None else None
            ),
            "p99_ratio": self.p99_ratio,
        }


@dataclass(frozen=True, slots=True)
class Row:
    scenario: str
    connections: int
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    baseline_rps: float | None
    baseline_p99_ms: float | None
    body_bytes: int
    loadgen_cpu: float
    loadgen_ceiling_rps: float | None
    sessions_stored: int
    redis: str = ""
    """The Redis the service ran on, ``<version> <allocator>``: it moves the figures."""
    server_cpu_us: float | None = None
    """CPU µs per request of a spawned service (its processes and its embedded Redis):
    unlike req/s, hardly moved by other load on a shared machine."""
    slowest_redis_us: int | None = None
    """The slowest single Redis command while the service was measured (SLOWLOG; 0: none
    took 100 us or more; None: Redis not reachable from the bench)."""
    slowest_redis: dict[str, Any] | None = None
    """The same by kind (``bench.slowlog.Slowest``): the slowest one's ``command`` name,
    the slowest script call (``script_us``, its file ``script``) and plain command
    (``plain_us``): a plain command logged as long as the scripts says the machine stalled
    Redis; and Redis's latency monitor's ``events`` (``aof-write``: the disk)."""
    machine: dict[str, Any] | None = None
    """The machine, as the scenario ended (``bench.machine``): cores, CPU, load average."""
    statuses: dict[int, int] | None = None
    """Answers by HTTP status: what ``errors`` were (429: the service's rate limits, which
    a scenario of a few users asking hundreds of times a second meets; see
    ``--rate-limits``). Requests with no answer are errors with no status."""
    cpu: CpuPerRequest | None = None
    """CPU per request of each part over the measured part only, and the ratios the
    machine allows (``bench.cpu``): ``python_cpu_us``, ``redis_cpu_us``, ... fields."""
    rounds: tuple[Round, ...] = ()
    """With ``--rounds`` above 1, every round; the other fields are those of the round
    with the median ratio."""

    @property
    def ratio(self) -> float | None:
        """The service's req/s over the baseline's; with rounds, their median."""
        if self.rounds:
            return _median(r.ratio for r in self.rounds)
        return self._own.ratio

    @property
    def p99_ratio(self) -> float | None:
        """The service's p99 over the baseline's; with rounds, their median."""
        if self.rounds:
            return _median(r.p99_ratio for r in self.rounds)
        return self._own.p99_ratio

    @property
    def _own(self) -> Round:
        return Round(self.rps, self.baseline_rps, self.p99_ms, self.baseline_p99_ms)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "connections": self.connections,
            "requests": self.requests,
            "errors": self.errors,
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "baseline_rps": round(self.baseline_rps, 1) if self.baseline_rps else None,
            "ratio": self.ratio,
            "baseline_p99_ms": (
                round(self.baseline_p99_ms, 3) if self.baseline_p99_ms is not None else None
            ),
            "p99_ratio": self.p99_ratio,
            "body_bytes": self.body_bytes,
            "loadgen_cpu": round(self.loadgen_cpu, 3),
            "loadgen_ceiling_rps": (
                round(self.loadgen_ceiling_rps, 1) if self.loadgen_ceiling_rps else None
            ),
            "sessions_stored": self.sessions_stored,
            "redis": self.redis,
            "server_cpu_us": (
                round(self.server_cpu_us, 1) if self.server_cpu_us is not None else None
            ),
            "slowest_redis_us": self.slowest_redis_us,
            "slowest_redis": self.slowest_redis,
            "machine": self.machine,
            "statuses": (
                {str(status): n for status, n in sorted(self.statuses.items())}
                if self.statuses is not None
                else None
            ),
            **(self.cpu or _NO_CPU).as_dict(),
            **({"rounds": [r.as_dict() for r in self.rounds]} if self.rounds else {}),
        }


def _median(values: Any) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 3) if known else None


def combine_rounds(rows: Sequence[Row]) -> Row:
    """One row for a scenario measured in several rounds: the round with the median ratio
    (the lower of the two middle ones for an even count), and every round's figures."""
    if len(rows) == 1:
        return rows[0]
    ranked = sorted(rows, key=lambda row: row.ratio or 0.0)
    middle = ranked[(len(ranked) - 1) // 2]
    return replace(middle, rounds=tuple(row._own for row in rows))


_NO_CPU = CpuPerRequest(None, None, None, None, None, None, None)
_JSON = msgspec.json.Encoder()


def print_json(row: Row, out: TextIO = sys.stdout) -> None:
    print_json_line(row.as_dict(), out)


def print_json_line(value: dict[str, Any], out: TextIO = sys.stdout) -> None:
    out.write(_JSON.encode(value).decode() + "\n")
    out.flush()


_COLUMNS = (
    ("scenario", 14, "{}"),
    ("conns", 5, "{}"),
    ("requests", 9, "{}"),
    ("errors", 6, "{}"),
    ("req/s", 9, "{:.0f}"),
    ("p50 ms", 7, "{:.2f}"),
    ("p99 ms", 7, "{:.2f}"),
    ("baseline", 9, "{:.0f}"),
    ("ratio", 6, "{:.2f}"),
    ("body B", 7, "{}"),
    ("gen cpu", 7, "{:.0%}"),
)


def _cell(fmt: str, value: object) -> str:
    return "-" if value is None else fmt.format(value)


def print_table(rows: list[Row], out: TextIO = sys.stdout) -> None:
    out.write("  ".join(name.rjust(width) for name, width, _ in _COLUMNS) + "\n")
    for row in rows:
        values = (
            row.scenario,
            row.connections,
            row.requests,
            row.errors,
            row.rps,
            row.p50_ms,
            row.p99_ms,
            row.baseline_rps,
            row.ratio,
            row.body_bytes,
            row.loadgen_cpu,
        )
        out.write(
            "  ".join(
                _cell(fmt, v).rjust(width)
                for (_, width, fmt), v in zip(_COLUMNS, values, strict=True)
            )
            + "\n"
        )
    ceiling = next((r.loadgen_ceiling_rps for r in rows if r.loadgen_ceiling_rps), None)
    if ceiling:
        out.write(
            f"load generator ceiling (canned answers, same connections): {ceiling:.0f} req/s\n"
        )
    if rows and rows[0].redis:
        out.write(f"redis: {rows[0].redis}\n")
    out.write(machine_line() + "\n")
    out.flush()


class Progress:
    """``\\r``-rewritten status line on stderr, only when stderr is a terminal."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.enabled = stream.isatty()

    def update(self, label: str, done: int, elapsed: float) -> None:
        if not self.enabled:
            return
        rate = done / elapsed if elapsed > 0 else 0.0
        self.stream.write(f"\r\x1b[K{label}: {done} requests, {rate:.0f} req/s, {elapsed:.1f} s")
        self.stream.flush()

    def note(self, text: str) -> None:
        if self.enabled:
            self.stream.write(f"\r\x1b[K{text}")
            self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
