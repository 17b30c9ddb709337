"""Saved per-conversation KV state: an LRU of llama context snapshots within a byte budget.

A snapshot is the exact token sequence a context had evaluated plus llama.cpp's state
bytes for it. It is reused only for the longest *exact token prefix* it shares with a new
prompt, so an edited or deleted earlier message simply ends the match there: stale state
can never be served. Thread-safe (worker threads read and write it).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class KvSnapshot:
    """A context's evaluated tokens and the llama.cpp state bytes that hold their KV cache."""

    tokens: tuple[int, ...]
    state: bytearray
    """llama.cpp's bytes (a bytearray so that it can read them in place); never modified."""

    @property
    def size_bytes(self) -> int:
        """Memory the snapshot holds (state plus token ids)."""
        return len(self.state) + 8 * len(self.tokens)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class KvStateCache:
    """Snapshots by key (a conversation id), least recently used dropped past ``budget_bytes``."""

    def __init__(self, budget_bytes: int) -> None:
        self._budget = budget_bytes
        self._entries: OrderedDict[str, KvSnapshot] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def size_bytes(self) -> int:
        """Bytes held now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> KvSnapshot | None:
        """The snapshot saved under ``key`` (now the most recently used), or None."""
        with self._lock:
            snapshot = self._entries.get(key)
            if snapshot is not None:
                self._entries.move_to_end(key)
            return snapshot

    def put(self, key: str, snapshot: KvSnapshot) -> bool:
        """Save ``snapshot`` under ``key``, evicting the least recently used; False if it can never fit."""
        size = snapshot.size_bytes
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.size_bytes
            if size > self._budget:
                return False
            while self._entries and self._bytes + size > self._budget:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.size_bytes
            self._entries[key] = snapshot
            self._bytes += size
            return True
