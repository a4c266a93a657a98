"""The service's garbage collector pace (presence_svc.heap), set once start-up is done."""

from __future__ import annotations

import gc

from presence_svc import heap


def test_settle_freezes_start_up_objects_and_makes_young_passes_rare() -> None:
    before = gc.get_threshold()
    try:
        heap.settle()
        assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, before[1], before[2])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
