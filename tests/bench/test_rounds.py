"""``bench --rounds``: a scenario's rounds combined into one row (``report.combine_rounds``)."""

from __future__ import annotations

from typing import Any

from presence_svc.bench.report import Row, combine_rounds


def _row(rps: float, baseline_rps: float, p99_ms: float, baseline_p99_ms: float) -> Row:
    return Row(
        scenario="heartbeat",
        connections=64,
        requests=1000,
        errors=0,
        rps=rps,
        p50_ms=1.0,
        p99_ms=p99_ms,
        baseline_rps=baseline_rps,
        baseline_p99_ms=baseline_p99_ms,
        body_bytes=66,
        loadgen_cpu=0.2,
        loadgen_ceiling_rps=None,
        sessions_stored=0,
    )


def test_the_row_is_the_median_round_and_its_ratios_the_medians() -> None:
    rows = [_row(500, 1000, 6, 4), _row(900, 1000, 5, 5), _row(700, 1000, 9, 3)]
    combined = combine_rounds(rows)
    out: dict[str, Any] = combined.as_dict()
    assert out["ratio"] == 0.7
    assert (out["rps"], out["p99_ms"]) == (700, 9)  # the round with the median ratio
    assert out["p99_ratio"] == 1.5  # the median of 1.5, 1.0 and 3.0, from another round
    assert [r["ratio"] for r in out["rounds"]] == [0.5, 0.9, 0.7]  # in the order measured
    assert [r["p99_ratio"] for r in out["rounds"]] == [1.5, 1.0, 3.0]


def test_of_an_even_count_the_lower_middle_round_is_shown() -> None:
    combined = combine_rounds([_row(900, 1000, 5, 5), _row(500, 1000, 5, 5)])
    assert combined.rps == 500
    assert combined.ratio == 0.7  # the median of 0.5 and 0.9


def test_one_round_is_the_row_as_measured() -> None:
    row = _row(800, 1000, 6, 4)
    out = combine_rounds([row]).as_dict()
    assert (out["ratio"], out["p99_ratio"]) == (0.8, 1.5)
    assert "rounds" not in out
