"""Rate limits by key (a user's sends, a device's heartbeats, a user's typing), per replica, in memory.

Knows nothing of gRPC; time is passed in (monotonic seconds).
"""

from __future__ import annotations


class RateLimiter:
    """A token bucket per key: ``rate_per_s`` tokens a second, holding at most ``burst``.

    With ``burst`` 1 it is a minimum interval of ``1 / rate_per_s`` between calls. Keys
    whose bucket is full again are dropped every ``prune_every_s`` (by :meth:`prune`); past
    ``max_keys`` the oldest are dropped (which only forgets their limit, never blocks anyone).
    """

    def __init__(self, rate_per_s: float, burst: float, max_keys: int = 1_000_000, prune_every_s: float = 30.0) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self._rate = rate_per_s
        self._burst = burst
        self._max_keys = max_keys
        self._prune_every_s = prune_every_s
        self._pruned_at: float | None = None
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def acquire(self, key: str, now: float) -> float:
        """Take a token for ``key``: 0.0 if allowed, else the seconds until one is available."""
        if self._pruned_at is None:
            self._pruned_at = now
        elif now - self._pruned_at >= self._prune_every_s:
            self.prune(now)  # O(keys) once a period keeps memory to the recently active
        tokens, at = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        if tokens < 1:
            return (1 - tokens) / self._rate
        self._buckets.pop(key, None)  # re-insert: insertion order is recency order
        self._buckets[key] = (tokens - 1, now)
        if len(self._buckets) > self._max_keys:
            self._buckets.pop(next(iter(self._buckets)))
        return 0.0

    def prune(self, now: float) -> None:
        """Forget keys whose bucket refilled (they would start full anyway)."""
        self._pruned_at = now
        full = [k for k, (tokens, at) in self._buckets.items() if tokens + (now - at) * self._rate >= self._burst]
        for key in full:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)
