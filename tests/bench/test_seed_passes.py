"""The seeding round under ``--server-processes N``: enough rounds that every process has
each user's token cached, as one process has after one round, and no more."""

from __future__ import annotations

import random

import pytest

from presence_svc.bench.command import seed_passes


def test_one_process_is_seeded_once() -> None:
    assert seed_passes(1) == 1


@pytest.mark.parametrize("processes", [2, 3, 4])
def test_each_process_sees_each_user_with_99_percent_probability(processes: int) -> None:
    passes = seed_passes(processes)
    assert (1 - 1 / processes) ** passes <= 0.01
    assert (1 - 1 / processes) ** (passes - 1) > 0.01  # the fewest rounds that do
    # 10 000 users, each round's connection landing on a process at random, as the kernel
    # spreads them: about 1 % of (user, process) pairs left cold, not half of them.
    rng = random.Random(7)
    seen = [{rng.randrange(processes) for _ in range(passes)} for _ in range(10_000)]
    cold = sum(processes - len(s) for s in seen) / (10_000 * processes)
    assert cold < 0.015
