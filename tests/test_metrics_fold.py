"""The tallies behind the Prometheus metrics (``metrics.py``) reach them exactly: folded
each loop turn, and also when a loop ended with its fold still queued (a test's loop, or a
process's last turn) and another loop observes next."""

from __future__ import annotations

import asyncio

from presence_svc import metrics


def _count(route: str) -> float:
    return metrics.REQUESTS.labels(route, "POST", "200")._value.get()


def _observed(route: str) -> float:
    samples = metrics.REQUEST_SECONDS.labels(route, "POST").collect()[0].samples
    return next(s.value for s in samples if s.name.endswith("_count"))


def test_a_loop_turn_folds_what_it_observed() -> None:
    async def main() -> tuple[float, float]:
        for _ in range(5):
            metrics.observe_request("/fold-turn", "POST", 200, 0.001)
        before = _count("/fold-turn")
        await asyncio.sleep(0)  # the turn ends: its fold runs
        await asyncio.sleep(0)
        return before, _count("/fold-turn")

    before, after = asyncio.run(main())
    assert before == 0
    assert after == 5
    assert _observed("/fold-turn") == 5


def test_observations_after_a_loop_ended_with_its_fold_queued_are_folded() -> None:
    loop = asyncio.new_event_loop()

    async def observe_and_stop() -> None:
        metrics.observe_request("/fold-ended", "POST", 200, 0.002)  # queues a fold here
        loop.stop()  # the loop stops before the queued fold runs

    task = loop.create_task(observe_and_stop())
    loop.run_forever()
    assert task.done()
    assert _count("/fold-ended") == 0  # not folded yet: queued on a stopped loop

    async def later() -> float:
        metrics.observe_request("/fold-ended", "POST", 200, 0.002)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return _count("/fold-ended")

    assert asyncio.run(later()) == 2  # the new loop queued its own fold: both folded
    loop.close()


def test_a_scrape_folds_first() -> None:
    async def main() -> float:
        for _ in range(3):
            metrics.observe_request("/fold-scrape", "POST", 200, 0.004)
        metrics.fold()  # what GET /metrics does before it reads
        return _count("/fold-scrape")

    assert asyncio.run(main()) == 3
