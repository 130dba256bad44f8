"""The validator process's collector settings: start-up objects frozen, full passes rare."""

from __future__ import annotations

import gc

from accord.node import tune_collector


def test_tune_collector_freezes_what_exists_and_raises_the_thresholds() -> None:
    before_threshold, before_frozen = gc.get_threshold(), gc.get_freeze_count()
    survivor = [object() for _ in range(1000)]  # alive at tuning time: must be frozen
    try:
        tune_collector(young=1234, middle=21, full=987)
        assert gc.get_threshold() == (1234, 21, 987)
        assert gc.get_freeze_count() >= before_frozen + len(survivor)
        # Frozen objects are no longer in any generation a collection walks.
        tracked = {id(o) for gen in range(3) for o in gc.get_objects(gen)}
        assert id(survivor) not in tracked
        cycle: list[object] = []
        cycle.append(cycle)  # garbage made after tuning is still collected
        del cycle
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*before_threshold)
