"""Time-ordered message ids (UUIDv7, RFC 9562)."""

from __future__ import annotations

import os
import random
import time
import uuid

#: Message ids must be unique, not secret (every member sees them): a generator seeded once
#: from the system's randomness, not a system call per id (tens of microseconds each here).
_random = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))  # a child never repeats its parent's ids


def uuid7(now_ms: int | None = None) -> str:
    """A UUIDv7: 48-bit unix milliseconds, then random bits; sorts by creation time."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    rand = _random.getrandbits(80)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # rand_b
    return str(uuid.UUID(int=value))
