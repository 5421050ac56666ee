"""``heap.settle``: the startup heap frozen, young collections rarer."""

from __future__ import annotations

import gc

from loopml.system import heap


def test_settle_freezes_the_heap_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    try:
        heap.settle()

        assert gc.get_freeze_count() > 1000
        assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, before[1], before[2])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
