"""What a worker does with one message of the work queue: plan a file job, or run a work item.

A work item is read, cut into batches of the job's ``batch_size``, and each batch is
checked (bad items become recorded failures), embedded when it holds documents, written
through the worker's sink, and counted in the job's record, in that order. A batch that
fails for a transient reason (store or inference unavailable, a full queue) is retried with
exponential back-off up to ``job_max_attempts`` times; after that its points are recorded as
failed with the reason. Before each batch the worker looks at the job's state, so
CancelJob stops its work within a batch. A redelivered item resumes after its last counted
batch (see :mod:`services.ingest.progress`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from nats.aio.msg import Msg

from services.ingest import progress
from services.ingest.embedder import Caller, InferenceEmbedder
from services.ingest.errors import SourceNotFound
from services.ingest.jobs import release_bulk
from services.ingest.kvtable import KvTable
from services.ingest.metrics import WorkerMetrics
from services.ingest.points import Passage, PointInput, passages_of, point_problem
from services.ingest.records import JobRecord, job_key
from services.ingest.sources import (
    ItemPlan,
    MalformedSource,
    Parsed,
    Plan,
    SourceFiles,
    plan_csv,
    plan_jsonl,
    plan_parquet,
    plan_text,
    read_item,
)
from services.ingest.store.base import StoredPoint, VectorStore
from services.ingest.uploads import Uploads
from services.ingest.workqueue import WorkQueue, item_of
from services.runtime.errors import ChatmeshError, NotFound, PermissionDenied, ResourceExhausted, Unavailable

log = logging.getLogger("chatmesh.ingest.worker")

T = TypeVar("T")


class TransientFailure(Exception):
    """Worth retrying after a pause (the store or inference is away or busy)."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class PermanentFailure(Exception):
    """Retrying will not help; the batch's points fail with this reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PointSink(Protocol):
    """Where a worker writes its batches: the ingest service (embedded store) or Qdrant itself."""

    async def write(self, job: JobRecord, points: Sequence[StoredPoint]) -> None:
        """Write ``points`` into the job's collection (TransientFailure / PermanentFailure)."""


@dataclass(frozen=True)
class RunnerSettings:
    """The knobs of running work items."""

    max_attempts: int
    backoff_s: float
    backoff_max_s: float
    max_failures: int
    chunk_batches: int
    passage_max_chars: int
    passage_overlap_chars: int
    heartbeat_s: float
    bulk_min_points: int
    max_payload_bytes: int


def classify(exc: ChatmeshError) -> Exception:
    """A domain error from the store or a peer as transient or permanent."""
    if isinstance(exc, ResourceExhausted):
        return TransientFailure(str(exc), exc.retry_after_s)
    if isinstance(exc, Unavailable):
        return TransientFailure(str(exc))
    return PermanentFailure(str(exc))


class ItemRunner:
    """Runs plan messages and work items for one worker process."""

    def __init__(
        self,
        table: KvTable[JobRecord],
        queue: WorkQueue,
        files: SourceFiles,
        sink: PointSink,
        embedder: InferenceEmbedder,
        store: VectorStore | None,
        settings: RunnerSettings,
        metrics: WorkerMetrics,
        uploads: Uploads,
    ) -> None:
        self._uploads = uploads
        self._table = table
        self._queue = queue
        self._files = files
        self._sink = sink
        self._embedder = embedder
        self._store = store
        self._s = settings
        self._metrics = metrics

    @contextlib.asynccontextmanager
    async def _alive(self, msg: Msg) -> AsyncIterator[None]:
        """Tell JetStream every few seconds that ``msg`` is still being worked on."""

        async def beat() -> None:
            while True:
                await asyncio.sleep(self._s.heartbeat_s)
                with contextlib.suppress(Exception):
                    await msg.in_progress()

        task = asyncio.create_task(beat())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(1, self._s.max_attempts + 1):
            try:
                return await call()
            except TransientFailure as exc:
                if attempt == self._s.max_attempts:
                    raise PermanentFailure(f"{exc.reason} (gave up after {attempt} attempts)") from None
                self._metrics.retries.labels(self._metrics.worker).inc()
                delay = min(self._s.backoff_max_s, self._s.backoff_s * 2 ** (attempt - 1))
                await asyncio.sleep(max(delay, exc.retry_after_s or 0.0))
        raise AssertionError("unreachable")

    # -- planning -----------------------------------------------------------------------

    async def plan(self, msg: Msg) -> None:
        """Cut a file job into work items and queue them."""
        body = json.loads(msg.data)
        key = job_key(body["owner"], body["job"])
        job = await self._table.get(key)
        if job is None or job.terminal or job.planned:
            await msg.ack()
            return
        async with self._alive(msg):
            try:
                path = await self._files.local(job.job_id, job.source)
                plan = await asyncio.to_thread(self._cut, job, path)
            except (MalformedSource, SourceNotFound, NotFound, PermissionDenied) as exc:
                reason = f"the source cannot be read: {exc}"
                await self._table.update(key, lambda j: _failed(j, reason))
                await msg.ack()
                await self._queue.close_job(job.job_id, drop_items=True)
                return
            if plan.points >= self._s.bulk_min_points and self._store is not None:
                with contextlib.suppress(ChatmeshError):
                    await self._store.set_bulk_mode(job.store_name, True)
                    await self._table.update(key, _bulk)
            await self._queue.publish_items(job.job_id, job.owner, plan.items)
            batches = sum((item.count + job.batch_size - 1) // job.batch_size for item in plan.items)
            now = time.time()

            def mark(current: JobRecord) -> JobRecord:
                progress.planned(current, len(plan.items), plan.points, batches, now)
                return current

            job = await self._table.update(key, mark) or job
        await msg.ack()
        if job.terminal:
            await self._ended(job)

    def _cut(self, job: JobRecord, path: Path) -> Plan:
        per_item = job.batch_size * self._s.chunk_batches
        fmt = job.source.format
        if fmt == "jsonl":
            return plan_jsonl(path, per_item)
        if fmt == "csv":
            return plan_csv(path, per_item)
        if fmt == "parquet":
            return plan_parquet(path, per_item)
        label = job.source.path or job.source.key
        return plan_text(
            path, label, job.source.uri, job.batch_size, self._s.passage_max_chars, self._s.passage_overlap_chars
        )

    # -- work items ---------------------------------------------------------------------

    async def item(self, msg: Msg) -> None:
        """Run one work item to its end (or to its job's cancellation)."""
        body: dict[str, Any] = json.loads(msg.data)
        item = item_of(body)
        key = job_key(body["owner"], body["job"])
        job = await self._table.get(key)
        if job is None or job.terminal or item.index in job.done_items:
            await (msg.term() if job is None or job.state == "cancelled" else msg.ack())
            return
        if (msg.metadata.num_delivered or 1) > 1:
            self._metrics.redeliveries.labels(self._metrics.worker).inc()
        resume = job.partial.get(str(item.index))
        start_batch = resume.batches_done if resume else 0
        async with self._alive(msg):
            entries = await self._entries(job, item)
            for number, start in enumerate(range(0, len(entries), job.batch_size)):
                if number < start_batch:
                    continue
                if job.state == "cancelled":
                    break
                started = time.perf_counter()
                ok, failures = await self._batch(job, entries[start : start + job.batch_size])
                now = time.time()
                job = (
                    await self._table.update(key, _counter(item.index, number, ok, failures, now, self._s.max_failures))
                    or job
                )
                self._metrics.batch_seconds.labels(self._metrics.worker).observe(time.perf_counter() - started)
                self._metrics.points.labels(self._metrics.worker).inc(ok)
                self._metrics.failed_points.labels(self._metrics.worker).inc(len(failures))
        if job.state == "cancelled":
            await msg.term()
            self._metrics.items.labels(self._metrics.worker, "cancelled").inc()
            return
        ended = False
        now = time.time()

        def finish(current: JobRecord) -> JobRecord:
            nonlocal ended
            ended = progress.finish_item(current, item.index, now)
            return current

        job = await self._table.update(key, finish) or job
        await msg.ack()
        self._metrics.items.labels(self._metrics.worker, "done").inc()
        if ended:
            await self._ended(job)

    async def _ended(self, job: JobRecord) -> None:
        await self._queue.close_job(job.job_id, drop_items=False)
        if self._store is not None:
            await release_bulk(self._table, self._store, job)
        self._files.forget(job.job_id)
        if job.source.upload_id:
            self._uploads.remove(job.owner, job.source.upload_id)
        log.info("job ended", extra={"job": job.job_id, "state": job.state, "points": job.points_done})

    async def _entries(self, job: JobRecord, item: ItemPlan) -> list[Parsed]:
        if item.passages:
            return [Parsed(item.first_position + i, passages=[p]) for i, p in enumerate(item.passages)]
        path = await self._files.local(job.job_id, job.source)
        return await asyncio.to_thread(read_item, path, job.source.format, item, job.source.uri)

    async def _batch(self, job: JobRecord, entries: Sequence[Parsed]) -> tuple[int, list[tuple[int, str]]]:
        """Write one batch; returns (points written, [(position, reason)...] failed)."""
        failures: list[tuple[int, str]] = []
        points: list[tuple[int, StoredPoint]] = []
        passages: list[tuple[int, Passage]] = []
        for entry in entries:
            if entry.problem:
                failures.append((entry.position, f"{_where(job, entry.position)}: {entry.problem}"))
            elif entry.point is not None:
                self._point(job, entry.position, entry.point, points, failures)
            else:
                found = entry.passages
                if entry.document is not None:
                    found = passages_of(entry.document, self._s.passage_max_chars, self._s.passage_overlap_chars)
                if not job.embedding_model:
                    failures.append(
                        (
                            entry.position,
                            f"{_where(job, entry.position)}: a document, and the collection has no embedding model",
                        )
                    )
                    continue
                passages.extend((entry.position, p) for p in found)
        if passages:
            try:
                vectors = await self._retrying(lambda: self._embed(job, [p.embed_text for _, p in passages]))
            except PermanentFailure as exc:
                failures.extend(
                    (pos, f"{_where(job, pos)}: {exc.reason}") for pos in sorted({pos for pos, _ in passages})
                )
            else:
                for (position, passage), vector in zip(passages, vectors, strict=True):
                    if len(vector) != job.vector_size:
                        failures.append(
                            (
                                position,
                                f"{_where(job, position)}: the model embeds {len(vector)} dimensions, "
                                f"the collection takes {job.vector_size}",
                            )
                        )
                    else:
                        points.append((position, StoredPoint(passage.id, vector, passage.payload)))
        if points:
            batch = [p for _, p in points]
            try:
                await self._retrying(lambda: self._write(job, batch))
            except PermanentFailure as exc:
                failures.extend(
                    (pos, f"{_where(job, pos)}: {exc.reason}") for pos in sorted({pos for pos, _ in points})
                )
                return 0, failures
        written_positions = {pos for pos, _ in points}
        failed_positions = {pos for pos, _ in failures}
        return len(written_positions - failed_positions), _unique(failures)

    def _point(
        self,
        job: JobRecord,
        position: int,
        point: PointInput,
        points: list[tuple[int, StoredPoint]],
        failures: list[tuple[int, str]],
    ) -> None:
        problem = point_problem(point, job.vector_size, self._s.max_payload_bytes)
        if problem is not None:
            failures.append((position, f"{_where(job, position)}: {problem[0]} {problem[1]}"))
        else:
            points.append((position, StoredPoint(point.id, point.vector, point.payload)))

    async def _embed(self, job: JobRecord, texts: list[str]) -> list[list[float]]:
        try:
            embedded = await self._embedder.embed(Caller(job.owner), job.embedding_model, texts)
        except ChatmeshError as exc:
            raise classify(exc) from None
        return embedded.vectors

    async def _write(self, job: JobRecord, points: list[StoredPoint]) -> None:
        await self._sink.write(job, points)


def _where(job: JobRecord, position: int) -> str:
    fmt = job.source.format
    if job.source.kind == "documents":
        return f"passage {position}"
    return {"jsonl": "line", "csv": "row", "parquet": "row", "text": "passage"}.get(fmt, "item") + f" {position}"


def _unique(failures: list[tuple[int, str]]) -> list[tuple[int, str]]:
    seen: set[int] = set()
    out = []
    for position, reason in failures:
        if position not in seen:
            seen.add(position)
            out.append((position, reason))
    return out


def _counter(
    item: int, batch: int, ok: int, failures: list[tuple[int, str]], now: float, max_failures: int
) -> Callable[[JobRecord], JobRecord]:
    def count(job: JobRecord) -> JobRecord:
        progress.record_batch(job, item, batch, ok, failures, now, max_failures)
        return job

    return count


def _failed(job: JobRecord, error: str) -> JobRecord:
    progress.fail(job, error, time.time())
    return job


def _bulk(job: JobRecord) -> JobRecord:
    job.bulk = True
    return job
