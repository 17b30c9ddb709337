"""Token buckets per key (user, device...), in memory: per replica, bounded in size."""

from __future__ import annotations

import time
from collections import OrderedDict


class TokenBuckets:
    """``rate`` tokens a second up to ``burst`` per key; ``take`` says how long to wait when empty."""

    def __init__(self, rate: float, burst: float, max_keys: int = 100_000) -> None:
        self._rate = rate
        self._burst = burst
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token for ``key``: 0.0 if granted, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        tokens, updated = self._buckets.pop(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - updated) * self._rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self._rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)  # the least recently used key starts afresh
        return wait
