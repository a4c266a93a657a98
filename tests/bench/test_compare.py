"""The order a comparison measures its services in, and the ratios it reports per order
(``bench.compare``): no timing, rows made up."""

from __future__ import annotations

import io
import json

from presence_svc.bench.compare import compare, orders, print_comparisons
from presence_svc.bench.report import Row


def _row(scenario: str, rps: float, cpu_us: float | None = None) -> Row:
    return Row(scenario, 64, 1000, 0, rps, 1.0, 2.0, None, None, 40, 0.5, None, 0, "", cpu_us)


def test_each_service_goes_first_once_per_repetition() -> None:
    assert orders(["", "/limits-off"]) == [["", "/limits-off"], ["/limits-off", ""]]
    three = orders(["", "/limits-off", "/timeline-off"])
    assert [o[0] for o in three] == ["", "/limits-off", "/timeline-off"]
    assert all(sorted(o) == sorted(three[0]) for o in three)
    assert orders([""]) == [[""]]  # nothing compared: measured once


def test_the_ratio_of_each_order_and_their_median_are_reported() -> None:
    rounds = [
        (
            "heartbeat",
            ["", "/limits-off"],
            {
                "": _row("heartbeat", 900, 110),
                "/limits-off": _row("heartbeat/limits-off", 1000, 100),
            },
        ),
        (
            "heartbeat",
            ["/limits-off", ""],
            {
                "/limits-off": _row("heartbeat/limits-off", 800, 100),
                "": _row("heartbeat", 840, 105),
            },
        ),
        (
            "views",
            ["", "/limits-off"],
            {"": _row("views", 500), "/limits-off": _row("views/limits-off", 400)},
        ),
        (
            "views",
            ["/limits-off", ""],
            {"/limits-off": _row("views/limits-off", 500), "": _row("views", 450)},
        ),
        (
            "heartbeat",
            ["", "/limits-off"],
            {
                "": _row("heartbeat", 1000, 100),
                "/limits-off": _row("heartbeat/limits-off", 1000, 100),
            },
        ),
    ]
    heartbeat, views = compare(rounds)
    assert (heartbeat.scenario, heartbeat.other) == ("heartbeat", "heartbeat/limits-off")
    assert [r.first for r in heartbeat.rounds] == ["heartbeat", "heartbeat/limits-off", "heartbeat"]
    assert [round(r.rps, 3) for r in heartbeat.rounds] == [0.9, 1.05, 1.0]
    assert heartbeat.rps_median == 1.0
    assert heartbeat.cpu_median == 1.05
    assert [round(r.rps, 3) for r in views.rounds] == [1.25, 0.9]
    assert round(views.rps_median, 3) == 1.075  # two orders: their mean
    assert views.cpu_median is None

    line = json.loads(json.dumps(views.as_dict()))
    assert line == {
        "comparison": "views/limits-off",
        "scenario": "views",
        "rounds": [
            {"first": "views", "rps_ratio": 1.25, "cpu_ratio": None},
            {"first": "views/limits-off", "rps_ratio": 0.9, "cpu_ratio": None},
        ],
        "rps_ratio_median": 1.075,
        "cpu_ratio_median": None,
    }
    out = io.StringIO()
    print_comparisons([views], out)
    assert out.getvalue() == (
        "views / views/limits-off, req/s: 1.250 (views first), "
        "0.900 (views/limits-off first); median 1.075\n"
    )


def test_a_run_without_a_second_service_compares_nothing() -> None:
    assert compare([("heartbeat", [""], {"": _row("heartbeat", 900)})]) == []
