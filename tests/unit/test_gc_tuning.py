"""The engine's processes collect generation 0 less often and freeze their start-up heap."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from statefleet.engine.runtime import gc_tuning
from statefleet.engine.runtime.settings import EngineSettings


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.set_threshold(*threshold)


def test_threshold_is_raised_and_the_heap_frozen_once(restored_gc: None) -> None:
    gc_tuning.tune_gc(12_345)
    assert gc.get_threshold()[0] == 12_345
    frozen = gc.get_freeze_count()
    assert frozen > 0
    gc_tuning.tune_gc(23_456)
    assert gc.get_threshold()[0] == 23_456
    # A second engine in the same process does not freeze the first one's garbage too.
    assert gc.get_freeze_count() == frozen


def test_the_setting_defaults_above_pythons_own() -> None:
    assert EngineSettings().gc_gen0_threshold > 700
    with pytest.raises(ValueError, match="gc_gen0_threshold"):
        EngineSettings(gc_gen0_threshold=0)
