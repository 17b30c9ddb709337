"""Ingest jobs, as the service runs them: start, read, list, watch, cancel.

StartJob checks everything it can at once (the collection, the source's existence and
format, the caller's quota), records the job (QUEUED) in the jobs bucket, opens the job's
consumer on the INGEST work queue and queues its work: inline documents are split into
passages and queued as work items right away; a file gets a plan message, and the first
free worker cuts it into items. Workers (:mod:`services.ingest.worker`) do the rest and
record progress in the job's record, which WatchJob streams.

Fairness: a user has at most ``max_active_jobs_per_user`` jobs queued or running; each job
has at most ``parallelism`` work items in flight (its consumer's ``max_ack_pending``); workers
take items round-robin across owners, so a big job never holds back another user's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal

from services.ingest import progress
from services.ingest.collections import Collections
from services.ingest.errors import JobNotFound, NoEmbeddingModel, TooManyJobs
from services.ingest.kvtable import KvTable
from services.ingest.pages import Page, page_after
from services.ingest.points import DocumentInput, Passage, checked_documents, passages_of
from services.ingest.records import JobRecord, SourceFormatName, SourceRecord, job_key
from services.ingest.sources import SourceFiles, passage_plan, source_format
from services.ingest.store.base import VectorStore
from services.ingest.uploads import Uploads
from services.ingest.workqueue import WorkQueue

log = logging.getLogger("chatmesh.ingest.jobs")

DEFAULT_BATCH = 128
DEFAULT_PARALLELISM = 4
DEFAULT_PAGE = 50
WATCH_INTERVAL_S = 0.5
WATCH_KEEPALIVE_S = 30.0


@dataclass(frozen=True)
class SourceAsk:
    """StartJob's source: inline documents, a path under the import root, or an S3 object."""

    kind: Literal["documents", "path", "s3", "upload"]
    documents: Sequence[DocumentInput] = ()
    path: str = ""
    endpoint: str = ""
    bucket: str = ""
    key: str = ""
    format: SourceFormatName = ""
    upload_id: str = ""


@dataclass(frozen=True)
class JobLimits:
    """The job settings StartJob applies."""

    max_active_per_user: int
    retry_after_s: float
    max_payload_bytes: int
    passage_max_chars: int
    passage_overlap_chars: int
    chunk_batches: int


def newest_first(record: JobRecord) -> str:
    """Sort key: newest job first, ties by id."""
    return f"{1e11 - record.created_at:020.6f}.{record.job_id}"


async def release_bulk(table: KvTable[JobRecord], store: VectorStore, job: JobRecord) -> None:
    """Index the collection again after a bulk job, unless another bulk job still writes into it."""
    if not job.bulk:
        return
    others = [j for j in await table.list(job.owner) if j.bulk and not j.terminal and j.store_name == job.store_name]
    if not others:
        try:
            await store.set_bulk_mode(job.store_name, False)
        except Exception:  # noqa: BLE001 - the collection may be gone; indexing resumes with the next job
            log.warning("could not end bulk mode", extra={"job": job.job_id})


class Jobs:
    """The service's side of jobs."""

    def __init__(
        self,
        table: KvTable[JobRecord],
        collections: Collections,
        queue: WorkQueue,
        files: SourceFiles,
        limits: JobLimits,
        uploads: Uploads,
    ) -> None:
        self._uploads = uploads
        self._table = table
        self._collections = collections
        self._queue = queue
        self._files = files
        self._limits = limits

    @property
    def table(self) -> KvTable[JobRecord]:
        """The jobs bucket."""
        return self._table

    async def start(
        self, owner: str, collection: str, source: SourceAsk, batch_size: int, parallelism: int
    ) -> JobRecord:
        """Record and queue a job (QUEUED).

        Raises:
            CollectionNotFound, SourceNotFound (naming `source.path` or `source.s3.key`),
            OutsideRoot / PermissionDenied (a path outside the import root, an S3 endpoint or
            bucket without credentials), InvalidArgument (format unknown, metadata too
            large), NoEmbeddingModel (documents into a vectors-only collection),
            TooManyJobs, Unavailable.
        """
        record = await self._collections.get(owner, collection)
        if source.kind == "upload":
            source = SourceAsk("path", path=self._uploads.path(owner, source.upload_id), format=source.format,
                               upload_id=source.upload_id)  # fmt: skip
        fmt: SourceFormatName = ""
        if source.kind in ("path", "s3"):
            fmt = source_format(source.path or source.key, source.format)
        wants_documents = source.kind == "documents" or fmt == "text"
        if wants_documents and not record.embedding_model:
            raise NoEmbeddingModel(collection)
        if source.kind == "documents":
            checked_documents(source.documents, self._limits.max_payload_bytes, field="source.documents.documents")
        src = SourceRecord(
            kind=source.kind,
            path=source.path,
            endpoint=source.endpoint,
            bucket=source.bucket,
            key=source.key,
            format=fmt,
            documents=len(source.documents),
            upload_id=source.upload_id,
        )
        await self._files.check(src)
        active = [j for j in await self._table.list(owner) if not j.terminal]
        if len(active) >= self._limits.max_active_per_user:
            raise TooManyJobs(
                f"you have {len(active)} jobs queued or running, the most allowed: wait for one to end",
                self._limits.retry_after_s,
            )
        now = time.time()
        job = JobRecord(
            job_id=str(uuid.uuid4()),
            owner=owner,
            collection=collection,
            store_name=record.store_name,
            vector_size=record.vector_size,
            embedding_model=record.embedding_model,
            batch_size=batch_size or DEFAULT_BATCH,
            parallelism=parallelism or DEFAULT_PARALLELISM,
            source=src,
            created_at=now,
            updated_at=now,
        )
        await self._table.create(job.key, job)
        try:
            await self._queue.open_job(job.job_id, owner, job.parallelism)
            if source.kind == "documents":
                job = await self._queue_documents(job, source.documents)
            else:
                await self._queue.publish_plan(job.job_id, owner)
        except Exception:
            await self._table.update(job.key, lambda j: _failed(j, "the work queue was unavailable when it started"))
            await self._queue.close_job(job.job_id, drop_items=True)
            raise
        return job

    async def _queue_documents(self, job: JobRecord, documents: Sequence[DocumentInput]) -> JobRecord:
        limits = self._limits
        passages: list[Passage] = [
            p for doc in documents for p in passages_of(doc, limits.passage_max_chars, limits.passage_overlap_chars)
        ]
        plan = passage_plan(passages, job.batch_size)
        await self._queue.publish_items(job.job_id, job.owner, plan.items)
        now = time.time()
        batches = len(plan.items)

        def mark(current: JobRecord) -> JobRecord:
            progress.planned(current, len(plan.items), plan.points, batches, now)
            return current

        return await self._table.update(job.key, mark) or job

    async def get(self, owner: str, job_id: str) -> JobRecord:
        """``owner``'s job (JobNotFound otherwise)."""
        job = await self._table.get(job_key(owner, job_id))
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def page(self, owner: str, collection: str, page_size: int, page_token: str) -> Page[JobRecord]:
        """``owner``'s jobs, newest first (only those into ``collection`` when given)."""
        jobs = [j for j in await self._table.list(owner) if not collection or j.collection == collection]
        jobs.sort(key=newest_first)
        return page_after(jobs, newest_first, page_size or DEFAULT_PAGE, page_token)

    async def cancel(self, owner: str, job_id: str) -> JobRecord:
        """Cancel ``owner``'s job: its queued items are dropped; a job that ended is returned as it is."""
        now = time.time()

        def cancel(job: JobRecord) -> JobRecord | None:
            if job.terminal:
                return None
            job.state = "cancelled"
            job.finished_at = now
            job.updated_at = now
            return job

        job = await self._table.update(job_key(owner, job_id), cancel)
        if job is None:
            raise JobNotFound(job_id)
        if job.state == "cancelled" and job.finished_at == now:
            await self._queue.close_job(job_id, drop_items=True)
            await release_bulk(self._table, self._collections.store, job)
        return job

    async def watch(self, owner: str, job_id: str) -> AsyncIterator[JobRecord]:
        """The job now, then its changes at most every half second, ending with its terminal state."""
        job = await self.get(owner, job_id)
        yield job
        if job.terminal:
            return
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        pending: JobRecord | None = None
        updates = self._table.watch(job.key, WATCH_KEEPALIVE_S)
        next_update: asyncio.Future[JobRecord | None] | None = None
        try:
            while True:
                if next_update is None:
                    next_update = asyncio.ensure_future(anext(updates))
                wait = None if pending is None else max(0.0, sent_at + WATCH_INTERVAL_S - loop.time())
                done, _ = await asyncio.wait({next_update}, timeout=wait)
                if next_update in done:
                    latest = next_update.result()
                    next_update = None
                    if latest is None or latest == job:
                        if pending is None and loop.time() - sent_at >= WATCH_KEEPALIVE_S - 1:
                            pending = job  # a keep-alive: the same progress again
                    else:
                        pending = latest
                        if latest.terminal:
                            yield latest
                            return
                if pending is not None and loop.time() - sent_at >= WATCH_INTERVAL_S:
                    job = pending
                    pending = None
                    sent_at = loop.time()
                    yield job
        finally:
            if next_update is not None:
                next_update.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await next_update
            await updates.aclose()

    async def active_job_into(self, owner: str, collection: str) -> str:
        """The id of a queued or running job of ``owner`` into ``collection``, or ""."""
        for job in await self._table.list(owner):
            if job.collection == collection and not job.terminal:
                return job.job_id
        return ""


def _failed(job: JobRecord, error: str) -> JobRecord:
    progress.fail(job, error, time.time())
    return job
