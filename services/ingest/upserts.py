"""Writing batches into a user's collection: points as given, documents embedded first.

A batch is checked whole before anything is written (a bad point anywhere fails the batch,
naming it, and nothing of it is stored), then written with one store upsert: acknowledged
means durable in the store. Each user has at most ``max_inflight`` batches being applied at
once on a replica (RESOURCE_EXHAUSTED past that), so one user's flood cannot take every
store thread and connection from the others.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from services.ingest.collections import Collections
from services.ingest.embedder import Caller, InferenceEmbedder
from services.ingest.errors import CollectionNotFound, NoEmbeddingModel
from services.ingest.points import (
    DocumentInput,
    PointInput,
    check_finite,
    check_payload_size,
    check_vector_length,
    checked_documents,
    checked_points,
    passages_of,
)
from services.ingest.records import CollectionRecord
from services.ingest.store.base import StoredPoint
from services.ingest.wire import PointBatch
from services.runtime.errors import FailedPrecondition, ResourceExhausted

STORE_BATCH = 256
_NO_PAYLOAD: dict[str, Any] = {}


class UserGate:
    """At most ``limit`` calls in flight per user; past that, ResourceExhausted with a retry hint."""

    def __init__(self, limit: int, retry_after_s: float) -> None:
        self._limit = limit
        self._retry_after_s = retry_after_s
        self._inflight: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def slot(self, user_id: str) -> AsyncIterator[None]:
        """Hold one of ``user_id``'s slots for the block."""
        held = self._inflight.get(user_id, 0)
        if held >= self._limit:
            raise ResourceExhausted(
                f"you have {held} batches being written already: wait for them, then retry", self._retry_after_s
            )
        self._inflight[user_id] = held + 1
        try:
            yield
        finally:
            left = self._inflight[user_id] - 1
            if left:
                self._inflight[user_id] = left
            else:
                del self._inflight[user_id]

    def inflight(self) -> int:
        """Batches in flight, every user together."""
        return sum(self._inflight.values())


@dataclass(frozen=True)
class Written:
    """What a batch wrote."""

    points: int
    documents: int
    embedding_tokens: int = 0


class Upserter:
    """Upserts for users, checked against their collection."""

    def __init__(
        self,
        collections: Collections,
        embedder: InferenceEmbedder,
        gate: UserGate,
        max_payload_bytes: int,
        passage_max_chars: int,
        passage_overlap_chars: int,
    ) -> None:
        self._collections = collections
        self._embedder = embedder
        self._gate = gate
        self._max_payload = max_payload_bytes
        self._passage_max = passage_max_chars
        self._overlap = passage_overlap_chars

    async def points(self, caller: Caller, name: str, points: Sequence[PointInput], field: str = "points") -> Written:
        """Write ``points`` into ``caller``'s collection ``name``.

        Raises:
            CollectionNotFound: no such collection of the caller's.
            InvalidArgument: a point's vector has the wrong length or a NaN, or its payload is too large.
            ResourceExhausted: the caller has too many batches in flight.
            StoreUnavailable: the store failed.
        """

        async def write(record: CollectionRecord) -> Written:
            stored = checked_points(points, record.vector_size, self._max_payload, field)
            async with self._gate.slot(caller.user_id):
                await self._write(record.store_name, stored)
            return Written(len(stored), 0)

        return await self._into(caller, name, write)

    async def batch(self, caller: Caller, batch: PointBatch) -> Written:
        """Write a batch decoded from the wire (services.ingest.wire): the same checks as :meth:`points`.

        Raises:
            The same as :meth:`points`, with the same field names.
        """

        async def write(record: CollectionRecord) -> Written:
            # Every point has the same length here (wire.py): the first one names a mismatch.
            check_vector_length("points[0].vector", batch.vectors.shape[1], record.vector_size)
            for i, payload in enumerate(batch.payloads):
                if payload is not None:
                    check_payload_size(f"points[{i}].payload", payload[1], self._max_payload)
            check_finite(batch.vectors)
            rows = batch.vectors.tolist()
            stored = [
                StoredPoint(key, rows[i], payload[0] if payload is not None else _NO_PAYLOAD)
                for i, (key, payload) in enumerate(zip(batch.ids, batch.payloads, strict=True))
            ]
            async with self._gate.slot(caller.user_id):
                await self._write(record.store_name, stored)
            return Written(len(stored), 0)

        return await self._into(caller, batch.collection, write)

    async def _into(
        self, caller: Caller, name: str, write: Callable[[CollectionRecord], Awaitable[Written]]
    ) -> Written:
        """``write`` into ``caller``'s collection ``name``, found through the write cache.

        A cached record whose store collection is gone (deleted, re-created or restored
        elsewhere) is looked up again and the write redone against what the KV says now.
        """
        record, cached = await self._collections.for_writes(caller.user_id, name)
        try:
            return await write(record)
        except CollectionNotFound:
            if not cached:
                raise
        self._collections.forget(caller.user_id, name)
        record, _ = await self._collections.for_writes(caller.user_id, name)
        return await write(record)

    async def documents(self, caller: Caller, name: str, documents: Sequence[DocumentInput]) -> Written:
        """Split ``documents`` into passages, embed them with the collection's model and write them.

        Raises:
            CollectionNotFound, InvalidArgument (metadata too large), ResourceExhausted (also
            inference's queue), NoEmbeddingModel, FailedPrecondition (the model's dimensions
            changed), StoreUnavailable.
        """
        record = await self._collections.get(caller.user_id, name)
        if not record.embedding_model:
            raise NoEmbeddingModel(name)
        checked_documents(documents, self._max_payload)
        passages = [p for doc in documents for p in passages_of(doc, self._passage_max, self._overlap)]
        async with self._gate.slot(caller.user_id):
            embedded = await self._embedder.embed(caller, record.embedding_model, [p.embed_text for p in passages])
            if embedded.dimensions != record.vector_size:
                raise FailedPrecondition(
                    f"{record.embedding_model!r} now embeds {embedded.dimensions} dimensions; "
                    f"collection {name!r} takes {record.vector_size}"
                )
            stored = [StoredPoint(p.id, v, p.payload) for p, v in zip(passages, embedded.vectors, strict=True)]
            await self._write(record.store_name, stored)
        return Written(len(stored), len(documents), embedded.prompt_tokens)

    async def _write(self, store_name: str, points: list[StoredPoint]) -> None:
        for start in range(0, len(points), STORE_BATCH):
            await self._collections.store.upsert(store_name, points[start : start + STORE_BATCH])
