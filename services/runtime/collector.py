"""Python's garbage collector set for a long-running process, and its long pauses logged.

A collection stops the event loop, and with it every call and batch the process has in hand.
Reference counting frees almost everything these processes make; the collector is for
cycles, and for the objects it must scan to find them. Every process freezes what start-up
built (modules, protobuf descriptors, settings) out of the collector's scans (``gc.freeze``)
and logs a collection longer than ``SLOW_PAUSE_S`` at WARNING with its generation and length.

How often young objects are collected (``young_threshold``: net container allocations) is
a setting per kind of process, measured under ``make bench-forms`` (pauses of 10 ms or more
summed over the run):

- a gRPC service (and the ingest worker, not measured otherwise) keeps the interpreter's
  700. grpc.aio leaves a small cycle per call (its handler lookup's closure, the call's
  details and metadata, about 13 objects), best collected small and often: the forms
  service paused 0.6 s in all with 700 and 5.0 s with 50,000 (collections of 30,000
  objects, up to 350 ms each);
- the forms worker uses 50,000 (``worker_gc_young_threshold``). Its deliveries, batches and
  held acknowledgements live a second or more, so with 700 they were promoted and full
  collections of the whole heap came every 1-3 s, 200-600 ms each: 21-26 s of pauses in a
  run ("processed" p99 12-22 s); with 50,000, 2 s (p99 1,012 ms in that run).
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

log = logging.getLogger("chatmesh.gc")

SLOW_PAUSE_S = 0.1
"""Collections at least this long are logged."""

_started = [0.0]
"""When the collection under way began (a callback sees "start" before "stop")."""


def _watch(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    paused = time.perf_counter() - _started[0]
    if paused >= SLOW_PAUSE_S:
        log.warning(
            "long garbage collection",
            extra={"generation": info.get("generation"), "pause_ms": round(paused * 1000, 1)},
        )


def tune_collector(young_threshold: int) -> None:
    """Freeze what start-up built, collect young objects every ``young_threshold`` allocations, log long pauses."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
    if _watch not in gc.callbacks:
        gc.callbacks.append(_watch)
