"""Collections: a user's named sets of points, their records, and the store behind them.

A record (KV, key ``<owner>.<name>``) says where the store keeps the points (``store_name``,
``c<uuid>``: users' names never reach the store, so two users' "notes" never meet) and how
they are compared. Another user's name is simply not found.

Writes look records up through a small cache (:meth:`Collections.for_writes`): a batch of
points costs one store call, and a KV round trip for every batch cost a fifth of the
service's CPU under load. What a write reads of a record (store name, size, model) never
changes while the record lives; a deleted, re-created or restored collection gets a new
store name, so a stale entry can only point at a store collection that is gone: the store
says so, and the write looks the record up afresh (:meth:`Collections.forget`). Entries also
expire after ``WRITE_CACHE_S``, for the replica that missed a delete whose store cleanup failed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from services.ingest.embedder import Caller, InferenceEmbedder
from services.ingest.errors import CollectionBusy, CollectionExists, CollectionNotFound
from services.ingest.kvtable import KvTable, RecordExists
from services.ingest.pages import Page, page_after
from services.ingest.records import CollectionRecord, ScheduleRecord, collection_key
from services.ingest.store.base import CollectionSpec, DistanceName, IndexKind, VectorStore
from services.runtime.errors import InvalidArgument, ResourceExhausted

DEFAULT_PAGE = 50
WRITE_CACHE_S = 2.0
WRITE_CACHE_ENTRIES = 4096


@dataclass(frozen=True)
class NewCollection:
    """What CreateCollection asks for."""

    name: str
    vector_size: int
    distance: DistanceName
    embedding_model: str
    payload_indexes: Sequence[tuple[str, IndexKind]]
    schedule: ScheduleRecord | None


@dataclass(frozen=True)
class CollectionView:
    """A collection as its owner sees it."""

    record: CollectionRecord
    points_count: int


#: Finds the id of a queued or running job writing into (owner, collection), or "".
ActiveJobLookup = Callable[[str, str], Awaitable[str]]


class Collections:
    """Create, find, list and delete a user's collections."""

    def __init__(
        self,
        table: KvTable[CollectionRecord],
        store: VectorStore,
        embedder: InferenceEmbedder,
        max_per_user: int,
        retry_after_s: float,
    ) -> None:
        self._table = table
        self._store = store
        self._embedder = embedder
        self._max_per_user = max_per_user
        self._retry_after_s = retry_after_s
        self.active_job: ActiveJobLookup | None = None
        self._for_writes: dict[str, tuple[CollectionRecord, float]] = {}

    @property
    def store(self) -> VectorStore:
        """The store the points live in."""
        return self._store

    async def find(self, owner: str, name: str) -> CollectionRecord | None:
        """``owner``'s collection ``name``, or None."""
        return await self._table.get(collection_key(owner, name))

    async def get(self, owner: str, name: str) -> CollectionRecord:
        """``owner``'s collection ``name`` (CollectionNotFound otherwise)."""
        record = await self._table.get(collection_key(owner, name))
        if record is None:
            raise CollectionNotFound(name)
        return record

    async def for_writes(self, owner: str, name: str) -> tuple[CollectionRecord, bool]:
        """(``owner``'s collection ``name``, whether it came from the cache) for a write.

        Raises:
            CollectionNotFound: no such collection (looked up in the KV).
        """
        key = collection_key(owner, name)
        cached = self._for_writes.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[1] < WRITE_CACHE_S:
            return cached[0], True
        record = await self.get(owner, name)
        if len(self._for_writes) >= WRITE_CACHE_ENTRIES:
            self._for_writes = {k: v for k, v in self._for_writes.items() if now - v[1] < WRITE_CACHE_S}
            if len(self._for_writes) >= WRITE_CACHE_ENTRIES:
                self._for_writes.clear()
        self._for_writes[key] = (record, now)
        return record, False

    def forget(self, owner: str, name: str) -> None:
        """Drop the cached record of ``owner``'s ``name`` (its store collection was not found)."""
        self._for_writes.pop(collection_key(owner, name), None)

    async def create(self, caller: Caller, new: NewCollection) -> CollectionView:
        """Create an empty collection for ``caller``.

        Raises:
            InvalidArgument: ``vector_size`` differs from the embedding model's; an index key twice.
            NotFound, FailedPrecondition: the embedding model is unknown, or cannot embed.
            CollectionExists: the caller has one of that name.
            ResourceExhausted: the caller has ``max_collections_per_user`` already.
        """
        keys = [k for k, _ in new.payload_indexes]
        if len(set(keys)) != len(keys):
            twice = next(k for k in keys if keys.count(k) > 1)
            raise InvalidArgument("payload_indexes", f"key {twice!r} is indexed twice")
        if new.embedding_model:
            facts = await self._embedder.model(caller, new.embedding_model)
            if facts.dimensions != new.vector_size:
                raise InvalidArgument(
                    "vector_size",
                    f"is {new.vector_size}, but {facts.name!r} embeds {facts.dimensions} dimensions",
                )
        owner = caller.user_id
        if await self._table.get(collection_key(owner, new.name)) is not None:
            raise CollectionExists(new.name)
        if len(await self._table.list(owner)) >= self._max_per_user:
            raise ResourceExhausted(
                f"you have {self._max_per_user} collections, the most allowed: delete one first", self._retry_after_s
            )
        record = CollectionRecord(
            owner=owner,
            name=new.name,
            store_name=f"c{uuid.uuid4().hex}",
            vector_size=new.vector_size,
            distance=new.distance,
            embedding_model=new.embedding_model,
            payload_indexes=list(new.payload_indexes),
            created_at=time.time(),
            schedule=new.schedule,
        )
        await self._store.create_collection(record.store_name, spec_of(record))
        try:
            await self._table.create(record.key, record)
        except RecordExists:
            await self._store.delete_collection(record.store_name)
            raise CollectionExists(new.name) from None
        return CollectionView(record, 0)

    async def view(self, record: CollectionRecord) -> CollectionView:
        """``record`` with its current point count."""
        try:
            count = await self._store.count(record.store_name)
        except CollectionNotFound:
            count = 0
        return CollectionView(record, count)

    async def page(self, owner: str, page_size: int, page_token: str) -> Page[CollectionView]:
        """``owner``'s collections by name, one page."""
        records = await self._table.list(owner)
        page = page_after(records, lambda r: r.name, page_size or DEFAULT_PAGE, page_token)
        return Page([await self.view(r) for r in page.items], page.next_token)

    async def delete(self, owner: str, name: str) -> None:
        """Delete ``owner``'s collection and its points (CollectionBusy while a job writes into it)."""
        record = await self.get(owner, name)
        if self.active_job is not None:
            job_id = await self.active_job(owner, name)
            if job_id:
                raise CollectionBusy(name, job_id)
        await self._table.delete(record.key)
        self._for_writes.pop(record.key, None)
        await self._store.delete_collection(record.store_name)

    async def set_schedule(self, owner: str, name: str, schedule: ScheduleRecord | None) -> CollectionRecord:
        """Replace the snapshot schedule of ``owner``'s collection."""

        def change(record: CollectionRecord) -> CollectionRecord:
            record.schedule = schedule
            record.last_scheduled_at = time.time() if schedule else 0.0
            return record

        updated = await self._table.update(collection_key(owner, name), change)
        if updated is None:
            raise CollectionNotFound(name)
        return updated

    async def replace_store(self, record: CollectionRecord) -> CollectionRecord | None:
        """Point ``record``'s key at a new store collection (a restore); returns the record replaced."""
        old = await self._table.get(record.key)
        await self._table.put(record.key, record)
        self._for_writes.pop(record.key, None)
        return old

    async def all_records(self) -> list[CollectionRecord]:
        """Every collection of every user (the snapshot scheduler)."""
        return await self._table.list("")

    async def mark_scheduled(self, record: CollectionRecord, due_at: float, now: float) -> bool:
        """Claim the scheduled snapshot due at ``due_at`` (False when another replica took it)."""
        claimed = False

        def change(current: CollectionRecord) -> CollectionRecord | None:
            nonlocal claimed
            if current.last_scheduled_at != record.last_scheduled_at or current.store_name != record.store_name:
                return None
            current.last_scheduled_at = now
            claimed = True
            return current

        await self._table.update(record.key, change)
        return claimed


def spec_of(record: CollectionRecord) -> CollectionSpec:
    """The store's view of a collection record."""
    return CollectionSpec(record.vector_size, record.distance, dict(record.payload_indexes))
