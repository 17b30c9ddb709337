"""The collector's tuning: start-up frozen out of scans, young collections spaced out, long pauses logged."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator

import pytest

from services.runtime import collector
from services.runtime.collector import tune_collector


@pytest.fixture(autouse=True)
def restore_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    if collector._watch in gc.callbacks:
        gc.callbacks.remove(collector._watch)


def test_what_start_up_built_is_frozen_and_young_collections_wait_for_the_setting() -> None:
    built_at_start = [{"a": [i]} for i in range(1000)]
    tune_collector(50_000)
    assert gc.get_freeze_count() >= len(built_at_start)
    assert gc.get_threshold()[0] == 50_000
    tune_collector(50_000)  # again (a second server in one process): one watcher, not two
    assert gc.callbacks.count(collector._watch) == 1


def test_a_long_collection_is_logged_with_its_generation(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    tune_collector(50_000)
    monkeypatch.setattr(collector, "SLOW_PAUSE_S", 0.0)  # every collection counts as long
    with caplog.at_level(logging.WARNING, logger="chatmesh.gc"):
        gc.collect(2)
    slow = [r for r in caplog.records if r.getMessage() == "long garbage collection"]
    assert slow and slow[-1].generation == 2 and slow[-1].pause_ms >= 0  # type: ignore[attr-defined]


def test_a_short_collection_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    tune_collector(50_000)
    with caplog.at_level(logging.WARNING, logger="chatmesh.gc"):
        gc.collect(0)
    assert not [r for r in caplog.records if r.getMessage() == "long garbage collection"]
