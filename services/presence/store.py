"""Last seen in CQL: what outlives the KV bucket.

Table ``presence_last_seen``: one row per user. Written with ``USING TIMESTAMP`` of the
last seen itself, so of two writes (two replicas, a retry arriving late) the later
last seen wins whatever order they land in.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from services.presence.errors import LastSeenUnavailable
from services.runtime.cql import CqlSession

SCHEMA = ("CREATE TABLE IF NOT EXISTS presence_last_seen (user_id uuid PRIMARY KEY, last_seen timestamp)",)


class LastSeenStore:
    """CQL reads and writes of last seen (implements tracker.LastSeenPort)."""

    def __init__(self, cql: CqlSession, read_concurrency: int) -> None:
        self._cql = cql
        self._reads = asyncio.Semaphore(read_concurrency)

    async def save(self, user_id: str, last_seen: float) -> None:
        """Store ``last_seen`` (unix seconds) unless a later one is stored."""
        await self._cql.execute(
            "INSERT INTO presence_last_seen (user_id, last_seen) VALUES (?, ?) USING TIMESTAMP ?",
            (uuid.UUID(user_id), datetime.fromtimestamp(last_seen, UTC), int(last_seen * 1_000_000)),
            prepare=True,
        )

    async def load(self, user_ids: Sequence[str]) -> dict[str, float]:
        """Stored last seen of those of ``user_ids`` that have one.

        One single-partition read per user, a bounded number in flight (an IN over
        hundreds of partitions would load one coordinator instead).
        """
        try:
            found = await asyncio.gather(*(self._load_one(u) for u in user_ids))
        except Exception as exc:  # driver timeouts and unavailability
            raise LastSeenUnavailable() from exc
        return {u: t for u, t in zip(user_ids, found, strict=True) if t is not None}

    async def _load_one(self, user_id: str) -> float | None:
        async with self._reads:
            rows = await self._cql.execute(
                "SELECT last_seen FROM presence_last_seen WHERE user_id = ?", (uuid.UUID(user_id),), prepare=True
            )
        if not rows or rows[0]["last_seen"] is None:
            return None
        stamp: datetime = rows[0]["last_seen"]
        return (stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp).timestamp()
