"""Submission ids: UUIDv7 (RFC 9562), time-ordered, with 74 bits from the OS's CSPRNG.

The id is what lets anyone holding it read the submission's status, so its random part
must be unguessable: the bits come from ``os.urandom`` (read 4 KiB at a time: one system
call per ~400 ids, not one each), never from a seeded generator.
"""

from __future__ import annotations

import os
import time
import uuid

_POOL_BYTES = 4096
_ID_BYTES = 10  # 80 random bits read; 74 used (version and variant take the rest)


class _RandomPool:
    __slots__ = ("_buffer", "_offset")

    def __init__(self) -> None:
        self._buffer = b""
        self._offset = _POOL_BYTES

    def reset(self) -> None:
        self._buffer, self._offset = b"", _POOL_BYTES

    def take(self) -> int:
        if self._offset + _ID_BYTES > len(self._buffer):
            self._buffer, self._offset = os.urandom(_POOL_BYTES), 0
        start = self._offset
        self._offset += _ID_BYTES
        return int.from_bytes(self._buffer[start : start + _ID_BYTES], "big")


_pool = _RandomPool()
os.register_at_fork(after_in_child=_pool.reset)  # a child never reuses its parent's bytes


def uuid7(now_ms: int | None = None) -> str:
    """A UUIDv7: 48-bit unix milliseconds, then CSPRNG bits; sorts by creation time."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    rand = _pool.take()
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # rand_b
    return str(uuid.UUID(int=value))
