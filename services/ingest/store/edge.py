"""The embedded store: Qdrant's own engine in-process through qdrant-edge-py (Qdrant Edge).

One Edge shard a collection, in its own directory under ``root`` (``.chatmesh/ingest/shards/``
under ``make up``). The ingest service is the only process that opens them: an Edge shard
directory may be open once at a time, which is why workers send their batches to the
service over Upsert when this store is in use.

Durability: every update goes to the shard's write-ahead log before ``update`` returns, so
an acknowledged upsert survives a crash of the process; the WAL and segments are flushed to
disk every ``flush_interval_s`` (the same trade-off as JetStream's ``sync_interval``: at
most that much acknowledged data at risk on a power loss, none on a process crash).

Indexing: Edge builds HNSW indexes only when ``optimize()`` is called, and that call holds
the GIL for its whole run (about 25 s for 100,000 vectors of 100 floats here), which would
stall the service. The embedded store therefore searches its segments exactly (about 4 ms
for 100,000 vectors of 100 floats): right for a laptop's worth of points; a large corpus
belongs on the server backend, where Qdrant indexes in its own threads. Payload indexes are
built as points arrive.

Edge calls are blocking and hold the GIL; they run in a small thread pool so the event loop
keeps serving between them, and writes to one shard are serialised. Small batches are the
exception: a batch of up to ``INLINE_WRITE_FLOATS`` floats (100 points of 640, about 0.7 ms
of Edge's time) is written on the event loop itself, because handing it to a thread and
back cost more than the write (about 1 ms of the process's CPU a batch, measured with
`make bench-ingest`, in lock hand-offs between the loop, the pool and grpc's poller); a
search waits that long at most.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from services.ingest.errors import CollectionNotFound, StoreUnavailable
from services.ingest.store.base import (
    MAX_SCROLL_PAGE,
    CollectionSpec,
    Hit,
    PointKey,
    StoredPoint,
    VectorQuery,
    VectorStore,
)

log = logging.getLogger("chatmesh.ingest.edge")

INLINE_WRITE_FLOATS = 64_000


_DISTANCES = {"cosine": qe.Distance.Cosine, "dot": qe.Distance.Dot, "euclid": qe.Distance.Euclid}
_INDEXES = {
    "keyword": qe.PayloadSchemaType.Keyword,
    "integer": qe.PayloadSchemaType.Integer,
    "float": qe.PayloadSchemaType.Float,
    "bool": qe.PayloadSchemaType.Bool,
    "text": qe.PayloadSchemaType.Text,
    "uuid": qe.PayloadSchemaType.Uuid,
    "datetime": qe.PayloadSchemaType.Datetime,
}


def point_key(value: Any) -> PointKey:
    """An Edge point id (int or UUID) as the store interface's key."""
    if isinstance(value, int):
        return value
    return str(uuid.UUID(str(value)))


def _match_value(value: str | int | bool) -> Any:
    # qdrant-edge-py 0.9.0 reads a Python bool as the integer 1 or 0 (bool is an int), so
    # MatchValue(True) matches `1`, not `true`; numpy's bool is read as a bool.
    return np.bool_(value) if isinstance(value, bool) else value


def edge_filter(query: VectorQuery) -> qe.Filter | None:
    """The payload matches of ``query`` as an Edge filter."""
    if not query.matches:
        return None
    return qe.Filter(must=[qe.FieldCondition(m.key, match=qe.MatchValue(_match_value(m.value))) for m in query.matches])


class EdgeStore(VectorStore):
    """Collections as Edge shards under ``root``."""

    kind = "embedded"

    def __init__(self, root: Path, threads: int = 2, flush_interval_s: float = 1.0) -> None:
        self._root = root
        self._root.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="edge")
        self._shards: dict[str, qe.EdgeShard] = {}
        self._opening = threading.Lock()  # one EdgeShard per directory: never two loads at once
        self._write_locks: dict[str, asyncio.Lock] = {}
        self._dirty: set[str] = set()
        self._flush_interval_s = flush_interval_s
        self._flusher: asyncio.Task[None] | None = None

    async def _run(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except (CollectionNotFound, StoreUnavailable):
            raise
        except Exception as exc:  # qdrant-edge raises plain Exception for every failure
            log.warning("edge call failed", extra={"reason": str(exc)[:300]})
            raise StoreUnavailable("the embedded vector store") from exc

    def _path(self, name: str) -> Path:
        return self._root / name

    def _shard(self, name: str) -> qe.EdgeShard:
        """The open shard ``name``, loading it from disk the first time (in an executor thread)."""
        shard = self._shards.get(name)
        if shard is None:
            with self._opening:
                shard = self._shards.get(name)
                if shard is None:
                    path = self._path(name)
                    if not (path / "edge_config.json").is_file():
                        raise CollectionNotFound(name)
                    shard = self._shards[name] = qe.EdgeShard.load(str(path))
        return shard

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._write_locks.get(name)
        if lock is None:
            lock = self._write_locks[name] = asyncio.Lock()
        return lock

    def _start_flusher(self) -> None:
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval_s)
            await self.flush()

    async def flush(self) -> None:
        """Flush every shard written since the last flush."""
        dirty, self._dirty = self._dirty, set()
        for name in dirty:
            shard = self._shards.get(name)
            if shard is not None:
                try:
                    await self._run(shard.flush)
                except StoreUnavailable:
                    self._dirty.add(name)

    async def create_collection(self, name: str, spec: CollectionSpec) -> None:
        def create() -> None:
            with self._opening:
                create_locked()

        def create_locked() -> None:
            path = self._path(name)
            if (path / "edge_config.json").is_file():
                return
            config = qe.EdgeConfig(
                vectors=qe.EdgeVectorParams(size=spec.vector_size, distance=_DISTANCES[spec.distance])
            )
            shard = qe.EdgeShard.create(str(path), config)
            for key, kind in spec.payload_indexes.items():
                shard.update(qe.UpdateOperation.create_field_index(key, _INDEXES[kind]))
            shard.flush()
            self._shards[name] = shard

        async with self._lock(name):
            await self._run(create)

    async def delete_collection(self, name: str) -> None:
        def delete() -> None:
            shard = self._shards.pop(name, None)
            if shard is not None:
                shard.close()
            shutil.rmtree(self._path(name), ignore_errors=True)

        async with self._lock(name):
            self._dirty.discard(name)
            await self._run(delete)
        self._write_locks.pop(name, None)

    async def collection_exists(self, name: str) -> bool:
        return name in self._shards or (self._path(name) / "edge_config.json").is_file()

    async def upsert(self, name: str, points: Sequence[StoredPoint]) -> None:
        def write() -> None:
            batch = [qe.Point(p.id, list(p.vector), dict(p.payload)) for p in points]
            self._shard(name).update(qe.UpdateOperation.upsert_points(batch))

        self._start_flusher()
        floats = sum(len(p.vector) for p in points)
        async with self._lock(name):
            if floats <= INLINE_WRITE_FLOATS and name in self._shards:
                self._inline(write)
            else:
                await self._run(write)
        self._dirty.add(name)

    @staticmethod
    def _inline(fn: Any) -> None:
        """Run ``fn`` on the event loop, failing as :meth:`_run` does."""
        try:
            fn()
        except (CollectionNotFound, StoreUnavailable):
            raise
        except Exception as exc:  # as in _run
            log.warning("edge call failed", extra={"reason": str(exc)[:300]})
            raise StoreUnavailable("the embedded vector store") from exc

    async def search(self, name: str, query: VectorQuery) -> list[Hit]:
        def run() -> list[Hit]:
            request = qe.QueryRequest(
                limit=query.limit,
                query=qe.Query.Nearest(list(query.vector)),
                filter=edge_filter(query),
                score_threshold=query.score_threshold,
                with_payload=True,
                with_vector=query.with_vectors,
            )
            found = self._shard(name).query(request)
            return [
                Hit(
                    point_key(p.id),
                    float(p.score),
                    p.payload or {},
                    list(p.vector) if query.with_vectors and isinstance(p.vector, list) else None,  # type: ignore[arg-type]
                )
                for p in found
            ]

        result: list[Hit] = await self._run(run)
        return result

    async def count(self, name: str) -> int:
        result: int = await self._run(lambda: self._shard(name).count(qe.CountRequest(exact=True)))
        return result

    async def scroll(self, name: str, offset: PointKey | None, limit: int) -> tuple[list[StoredPoint], PointKey | None]:
        def page() -> tuple[list[StoredPoint], PointKey | None]:
            records, next_offset = self._shard(name).scroll(
                qe.ScrollRequest(offset=offset, limit=min(limit, MAX_SCROLL_PAGE), with_payload=True, with_vector=True)
            )
            points = [StoredPoint(point_key(r.id), list(r.vector or []), r.payload or {}) for r in records]  # type: ignore[arg-type]
            return points, (point_key(next_offset) if next_offset is not None else None)

        result: tuple[list[StoredPoint], PointKey | None] = await self._run(page)
        return result

    async def set_bulk_mode(self, name: str, bulk: bool) -> None:
        """Nothing to defer: the embedded store builds no vector index (see the module docstring)."""
        if not await self.collection_exists(name):
            raise CollectionNotFound(name)

    async def check(self) -> None:
        if not self._root.is_dir():
            raise StoreUnavailable("the embedded vector store's directory")

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        await self.flush()

        def close_all() -> None:
            for shard in self._shards.values():
                shard.flush()
                shard.close()
            self._shards.clear()

        await self._run(close_all)
        self._executor.shutdown(wait=True)
