"""The backtest's pause of the cyclic collector: what it must leave behind."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from atb.engine.gc_pause import cyclic_gc_paused


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    gc.unfreeze()
    if not was:
        gc.disable()


def test_collections_resume_with_no_young_backlog_and_the_block_objects_survive(
    collector_on: None,
) -> None:
    collections: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    try:
        with cyclic_gc_paused():
            assert not gc.isenabled()
            kept = [_Node() for _ in range(5_000)]
            gc.callbacks.append(seen)
        after = [_Node() for _ in range(100)]
    finally:
        gc.callbacks.remove(seen)
    assert gc.isenabled()
    # What the block made went straight to the oldest generation: leaving the block does
    # not set off a young collection that scans all of it.
    assert collections == []
    assert any(o is kept[0] for o in gc.get_objects(generation=2))
    assert len(kept) == 5_000 and len(after) == 100
    assert gc.get_freeze_count() == 0


def test_a_cycle_made_in_the_block_is_still_collected_by_a_full_collection(
    collector_on: None,
) -> None:
    with cyclic_gc_paused():
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        ref = weakref.ref(a)
        del a, b
    assert ref() is not None  # no collection ran inside the block
    gc.collect()
    assert ref() is None


def test_a_caller_with_the_collector_off_keeps_it_off(collector_on: None) -> None:
    gc.disable()
    with cyclic_gc_paused():
        pass
    assert not gc.isenabled()


def test_objects_the_process_froze_itself_stay_frozen(collector_on: None) -> None:
    gc.freeze()
    frozen = gc.get_freeze_count()
    assert frozen > 0
    with cyclic_gc_paused():
        [_Node() for _ in range(100)]
    # (Frozen objects can still be freed by reference counting, so not exactly `frozen`;
    # released, the count would be 0.)
    assert gc.get_freeze_count() > frozen // 2
    assert gc.isenabled()


def test_an_error_in_the_block_still_turns_collections_back_on(collector_on: None) -> None:
    with pytest.raises(ValueError), cyclic_gc_paused():
        raise ValueError("boom")
    assert gc.isenabled()
