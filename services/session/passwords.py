"""Password hashing with argon2id, off the event loop."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


class PasswordVault:
    """Hashes and checks passwords; each hash runs in a worker thread (tens of ms of CPU)."""

    def __init__(self, time_cost: int, memory_kib: int) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)
        # Checked against when the username does not exist, so that a wrong username
        # costs the same time as a wrong password and timing tells nothing.
        self._decoy = self._hasher.hash("chatmesh decoy password")

    async def hash(self, password: str) -> str:
        """An argon2id hash of ``password``."""
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """True if ``password`` matches ``stored_hash`` (None: check a decoy, return False)."""
        try:
            return await asyncio.to_thread(self._hasher.verify, stored_hash or self._decoy, password) and bool(
                stored_hash
            )
        except (VerificationError, InvalidHashError):
            return False
