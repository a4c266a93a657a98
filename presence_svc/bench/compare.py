"""Services spawned side by side (``--compare-limits``, ``--compare-timeline``): the
order each scenario measures them in, and their ratios per order.

Measured one after the other, the later service carries an order artifact: a service
measured second ran idle meanwhile beside the first one's background work (settlements
coming due, sweeps, the ledger), and the machine warmed. In 45 s runs limits on/off came
out 0.77 measured in one order against 0.94-1.02 as separate spawns. So every repetition
of a scenario measures the services once in each rotation (A B, then B A): each goes first
once, and the ratio is reported per order and as their median.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from presence_svc.bench.report import Row

__all__ = ["Comparison", "OrderRatio", "compare", "orders", "print_comparisons"]


def orders(suffixes: Sequence[str]) -> list[list[str]]:
    """The orders one repetition of a scenario measures the services in (by their rows'
    suffix, ``""`` the main one): every rotation, so each goes first once; one service
    alone is measured once."""
    if len(suffixes) < 2:
        return [list(suffixes)]
    return [[*suffixes[i:], *suffixes[:i]] for i in range(len(suffixes))]


@dataclass(frozen=True, slots=True)
class OrderRatio:
    first: str
    """The row name of the service measured first in this round."""
    rps: float
    """The main service's req/s over the other's."""
    cpu: float | None
    """The main service's server CPU per request over the other's (None: not measured)."""


@dataclass(frozen=True, slots=True)
class Comparison:
    scenario: str
    """The main service's row name, e.g. ``heartbeat``."""
    other: str
    """The other service's, e.g. ``heartbeat/limits-off``."""
    rounds: list[OrderRatio] = field(default_factory=list)

    @property
    def rps_median(self) -> float:
        return statistics.median(r.rps for r in self.rounds)

    @property
    def cpu_median(self) -> float | None:
        cpu = [r.cpu for r in self.rounds if r.cpu is not None]
        return statistics.median(cpu) if cpu else None

    def as_dict(self) -> dict[str, Any]:
        cpu = self.cpu_median
        return {
            "comparison": self.other,
            "scenario": self.scenario,
            "rounds": [
                {
                    "first": r.first,
                    "rps_ratio": round(r.rps, 3),
                    "cpu_ratio": None if r.cpu is None else round(r.cpu, 3),
                }
                for r in self.rounds
            ],
            "rps_ratio_median": round(self.rps_median, 3),
            "cpu_ratio_median": None if cpu is None else round(cpu, 3),
        }


def compare(rounds: Sequence[tuple[str, Sequence[str], Mapping[str, Row]]]) -> list[Comparison]:
    """Per scenario and other service, the main service's ratio to it in each round
    (``(scenario, order measured, rows by suffix)``), in the order first met."""
    found: dict[tuple[str, str], Comparison] = {}
    for scenario, order, rows in rounds:
        main = rows.get("")
        if main is None or len(order) < 2:
            continue
        for suffix, row in rows.items():
            if not suffix or not row.rps:
                continue
            key = (scenario, suffix)
            if key not in found:
                found[key] = Comparison(scenario, scenario + suffix)
            cpu = (
                main.server_cpu_us / row.server_cpu_us
                if main.server_cpu_us and row.server_cpu_us
                else None
            )
            found[key].rounds.append(OrderRatio(scenario + order[0], main.rps / row.rps, cpu))
    return list(found.values())


def print_comparisons(comparisons: Sequence[Comparison], out: TextIO) -> None:
    """For people: one line per comparison."""
    for c in comparisons:
        each = ", ".join(f"{r.rps:.3f} ({r.first} first)" for r in c.rounds)
        cpu = c.cpu_median
        out.write(
            f"{c.scenario} / {c.other}, req/s: {each}; median {c.rps_median:.3f}"
            + ("" if cpu is None else f"; server CPU per request, median {cpu:.3f}")
            + "\n"
        )
    out.flush()
