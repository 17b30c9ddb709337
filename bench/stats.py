"""Small helpers shared by the benchmarks."""

from __future__ import annotations

import statistics


def percentile(samples: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``samples`` by nearest rank."""
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def median(samples: list[float]) -> float:
    """The median of ``samples``."""
    return statistics.median(samples)


def emit(key: str, value: float | int | str) -> None:
    """Print one `key=value` line (floats with 4 significant decimals)."""
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    print(f"{key}={text}", flush=True)
