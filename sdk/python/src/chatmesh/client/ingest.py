"""Collections, ingestion and search, as one call each: ``create_collection``, ``ingest``, ``search``.

``ingest`` picks the path users would pick by hand, so that one call works from three
documents to a multi-gigabyte file:

- **points** (vectors) in a list: Upsert, one batch of up to 256 at a time, each batch
  acknowledged before the next is sent. Upsert is idempotent per point id, so a batch
  refused with UNAVAILABLE is sent again (StreamUpsert is not used: a client stream cannot
  be repeated, and it reports nothing until its end).
- **documents** (texts) in a list: embedding them is the slow part (the bundled model
  embeds a few a second on a small machine), so up to ``job_threshold`` (64) go in one
  Upsert, with a deadline of the client's ``stream_deadline_s``; more go to StartJob as
  inline documents, where the ingest workers embed them in parallel batches and WatchJob
  streams the progress.
- a **file** (``pathlib.Path``: JSONL, CSV, Parquet, or text cut into passages):
  UploadSource, StartJob on the upload, WatchJob for the progress.

Each path returns once the points are searchable, calls ``on_progress`` with the counts
the server has acknowledged, and cancels its job when the awaiting task is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import grpc
from google.protobuf import json_format

from chatmesh.client.documents import (
    DISTANCES,
    FORMATS,
    DistanceName,
    FormatName,
    IngestProgress,
    IngestResult,
    Item,
    JobFailed,
    MatchValue,
    ProgressCallback,
    SearchHit,
    id_value,
    payload_matches,
    to_messages,
)
from chatmesh.client.retry import RetryPolicy
from chatmesh.inference.v1 import inference_pb2, inference_pb2_grpc
from chatmesh.ingest.v1 import ingest_pb2 as pb
from chatmesh.ingest.v1 import ingest_pb2_grpc

log = logging.getLogger("chatmesh.client")

#: Most items of one Upsert (the contract's limit).
UPSERT_BATCH = 256
#: Most documents of one inline job (the contract's limit) and the bytes we put in one
#: StartJob (the service takes 4 MiB unless configured otherwise).
JOB_MAX_DOCUMENTS = 10_000
JOB_MAX_BYTES = 3 * 1024 * 1024
UPLOAD_CHUNK = 1024 * 1024
_TERMINAL = frozenset(
    {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_COMPLETED_WITH_ERRORS, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED}
)


def _job_batches(documents: Sequence[pb.Document]) -> Iterable[list[pb.Document]]:
    """The documents cut into inline jobs, each within the count and byte limits of one StartJob."""
    batch: list[pb.Document] = []
    size = 0
    for document in documents:
        cost = document.ByteSize() + 8
        if batch and (len(batch) >= JOB_MAX_DOCUMENTS or size + cost > JOB_MAX_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(document)
        size += cost
    if batch:
        yield batch


class CollectionClient:
    """The ingest conveniences of :class:`~chatmesh.client.Client` (it passes its stubs and deadlines)."""

    def __init__(
        self,
        ingest: ingest_pb2_grpc.IngestServiceStub,
        inference: inference_pb2_grpc.InferenceServiceStub,
        retry: RetryPolicy,
        rng: random.Random,
        stream_deadline_s: float,
    ) -> None:
        self._ingest = ingest
        self._inference = inference
        self._retry = retry
        self._rng = rng
        self._stream_deadline_s = stream_deadline_s

    async def embedding_model(self, name: str = "") -> inference_pb2.Model:
        """Inference's embedding model ``name`` (empty: the default one).

        Raises:
            LookupError: Inference has no such model, or it cannot embed.
        """
        listed: inference_pb2.ListModelsResponse = await self._inference.ListModels(inference_pb2.ListModelsRequest())
        for model in listed.models:
            if (model.name == name if name else model.default_for_embed) and model.can_embed:
                return model
        raise LookupError(f"inference has no embedding model {name or '(default)'}")

    async def create_collection(
        self,
        name: str,
        *,
        vector_size: int | None = None,
        embedding_model: str | None = None,
        distance: DistanceName = "cosine",
        payload_indexes: Mapping[str, pb.PayloadIndexType] | None = None,
    ) -> pb.Collection:
        """See :meth:`chatmesh.client.Client.create_collection`."""
        model = embedding_model
        size = vector_size
        if size is None or model == "":
            chosen = await self.embedding_model(model or "")
            model, size = chosen.name, size or chosen.embedding_dimensions
        indexes = [pb.PayloadIndex(key=k, type=t) for k, t in (payload_indexes or {}).items()]
        answer: pb.CreateCollectionResponse = await self._ingest.CreateCollection(
            pb.CreateCollectionRequest(
                name=name,
                vector_size=size,
                distance=DISTANCES[distance],
                embedding_model=model or "",
                payload_indexes=indexes,
            )
        )
        return answer.collection

    async def ingest(
        self,
        collection: str,
        items: Iterable[Item] | os.PathLike[str],
        *,
        create: bool,
        vector_size: int | None,
        embedding_model: str | None,
        distance: DistanceName,
        format: FormatName | None,
        on_progress: ProgressCallback | None,
        job_threshold: int,
        batch_size: int,
        parallelism: int,
    ) -> IngestResult:
        """See :meth:`chatmesh.client.Client.ingest`."""
        if isinstance(items, str | bytes | Mapping):
            raise TypeError("items: a list of texts, documents or points, or a pathlib.Path to a file")
        if isinstance(items, os.PathLike):
            path = Path(items)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such file")
            if create:
                text = format == "text" or path.suffix.lower() in (".txt", ".text", ".md")
                await self._create_if_missing(collection, vector_size, embedding_model, distance, text, None)
            return await self._ingest_file(collection, path, format, on_progress, batch_size, parallelism)
        documents, points = to_messages(items)
        if create:
            first = len(points[0].vector) if points else None
            await self._create_if_missing(collection, vector_size, embedding_model, distance, bool(documents), first)
        if points:
            return await self._upsert(collection, points, "points", on_progress, None)
        if len(documents) <= job_threshold:
            return await self._upsert(collection, documents, "documents", on_progress, self._stream_deadline_s)
        return await self._ingest_inline(collection, documents, on_progress, batch_size, parallelism)

    async def search(
        self,
        collection: str,
        query: str | Sequence[float],
        *,
        limit: int,
        filter: Mapping[str, MatchValue] | None,
        score_threshold: float | None,
        with_vectors: bool,
        timeout: float | None,
    ) -> list[SearchHit]:
        """See :meth:`chatmesh.client.Client.search`."""
        request = pb.SearchRequest(
            collection=collection,
            limit=limit,
            filter=payload_matches(filter or {}),
            with_vectors=with_vectors,
        )
        if isinstance(query, str):
            request.text = query
        else:
            request.vector.extend(query)
        if score_threshold is not None:
            request.score_threshold = score_threshold
        answer: pb.SearchResponse = await self._ingest.Search(request, timeout=timeout)
        return [
            SearchHit(
                collection=collection,
                id=id_value(p.id),
                score=p.score,
                payload=json_format.MessageToDict(p.payload),
                vector=tuple(p.vector) if with_vectors else None,
            )
            for p in answer.points
        ]

    # -- the three paths -----------------------------------------------------------------------

    async def _create_if_missing(
        self,
        collection: str,
        vector_size: int | None,
        embedding_model: str | None,
        distance: DistanceName,
        documents: bool,
        first_vector_size: int | None,
    ) -> None:
        size = vector_size or (None if documents else first_vector_size)
        if size is None and not documents and embedding_model is None:
            raise ValueError("create: a file of vectors needs vector_size (or embedding_model)")
        model = embedding_model if (embedding_model is not None or not documents) else ""
        try:
            made = await self.create_collection(collection, vector_size=size, embedding_model=model, distance=distance)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
            return
        log.debug("created collection %s (%d dimensions)", made.name, made.vector_size)

    async def _upsert(
        self,
        collection: str,
        items: Sequence[pb.Document] | Sequence[pb.Point],
        kind: Literal["documents", "points"],
        on_progress: ProgressCallback | None,
        timeout: float | None,
    ) -> IngestResult:
        written = 0
        for start in range(0, len(items), UPSERT_BATCH):
            batch = items[start : start + UPSERT_BATCH]
            request = pb.UpsertRequest(collection=collection)
            getattr(request, kind).extend(batch)
            try:
                answer: pb.UpsertResponse = await self._ingest.Upsert(request, timeout=timeout)
            except grpc.aio.AioRpcError as error:
                if start:
                    last = start + len(batch) - 1
                    error.add_note(f"in the batch of items {start} to {last}; the items before it are written")
                raise
            written += answer.points_upserted
            if on_progress is not None:
                on_progress(IngestProgress(done=written, total=len(items)))
        return IngestResult(collection=collection, points_written=written)

    async def _ingest_inline(
        self,
        collection: str,
        documents: Sequence[pb.Document],
        on_progress: ProgressCallback | None,
        batch_size: int,
        parallelism: int,
    ) -> IngestResult:
        written = failed = 0
        failures: list[pb.ItemFailure] = []
        job_ids: list[str] = []
        for batch in _job_batches(documents):
            source = pb.JobSource(documents=pb.InlineDocuments(documents=batch))
            job = await self._run_job(
                collection, source, batch_size, parallelism, on_progress, offset=(written, failed, len(documents))
            )
            written += job.progress.points_done
            failed += job.progress.points_failed
            failures.extend(job.failures)
            job_ids.append(job.job_id)
        return IngestResult(collection, written, failed, tuple(failures), tuple(job_ids))

    async def _ingest_file(
        self,
        collection: str,
        path: Path,
        format: FormatName | None,
        on_progress: ProgressCallback | None,
        batch_size: int,
        parallelism: int,
    ) -> IngestResult:
        async def parts() -> AsyncIterator[pb.UploadSourceRequest]:
            yield pb.UploadSourceRequest(file_name=path.name)
            with open(path, "rb") as f:
                while chunk := await asyncio.to_thread(f.read, UPLOAD_CHUNK):
                    yield pb.UploadSourceRequest(chunk=chunk)

        upload: pb.UploadSourceResponse = await self._ingest.UploadSource(parts(), timeout=24 * 3600)
        how = FORMATS[format] if format else pb.SOURCE_FORMAT_UNSPECIFIED
        source = pb.JobSource(upload_id=upload.upload_id, format=how)
        job = await self._run_job(collection, source, batch_size, parallelism, on_progress, offset=None)
        return IngestResult(
            collection, job.progress.points_done, job.progress.points_failed, tuple(job.failures), (job.job_id,)
        )

    async def _run_job(
        self,
        collection: str,
        source: pb.JobSource,
        batch_size: int,
        parallelism: int,
        on_progress: ProgressCallback | None,
        offset: tuple[int, int, int] | None,
    ) -> pb.Job:
        """Start a job and follow it to its end; its final record.

        ``offset``: (points written and failed by earlier jobs of the same call, its total).
        """
        started: pb.StartJobResponse = await self._ingest.StartJob(
            pb.StartJobRequest(collection=collection, source=source, batch_size=batch_size, parallelism=parallelism)
        )
        job_id = started.job.job_id
        try:
            await self._watch(job_id, on_progress, offset)
        except asyncio.CancelledError:
            await asyncio.shield(self._ingest.CancelJob(pb.CancelJobRequest(job_id=job_id)))
            raise
        answer: pb.GetJobResponse = await self._ingest.GetJob(pb.GetJobRequest(job_id=job_id))
        if answer.job.progress.state in (pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED):
            raise JobFailed(answer.job)
        return answer.job

    async def _watch(
        self, job_id: str, on_progress: ProgressCallback | None, offset: tuple[int, int, int] | None
    ) -> None:
        """Follow WatchJob to a terminal state, watching again after UNAVAILABLE (it is read-only)."""
        failures = 0
        while True:
            ended = False
            try:
                async for update in self._ingest.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=7 * 86_400):
                    failures = 0
                    p = update.progress
                    if on_progress is not None:
                        done, failed, total = offset if offset is not None else (0, 0, p.points_total)
                        on_progress(
                            IngestProgress(
                                done=done + p.points_done,
                                total=total,
                                failed=failed + p.points_failed,
                                points_per_second=p.points_per_second,
                                eta_seconds=p.eta_seconds if math.isfinite(p.eta_seconds) else 0.0,
                                job_id=job_id,
                            )
                        )
                    if p.state in _TERMINAL:
                        return
                ended = True  # closed before the job ended (the contract says it does not): watch again
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE or failures + 1 >= self._retry.max_attempts:
                    raise
            failures += 1
            if ended and failures >= self._retry.max_attempts:
                raise ConnectionError(f"WatchJob {job_id} kept ending before the job did")
            wait = self._retry.backoff_s(failures, self._rng)
            log.debug("WatchJob %s: dropped, watching again in %.3f s", job_id, wait)
            await asyncio.sleep(wait)


class IngestStub(ingest_pb2_grpc.IngestServiceStub):
    """IngestService's generated stub, every RPC as it is, that is also callable to ingest.

    ``client.ingest.Search(request)`` is the RPC; ``await client.ingest("notes", texts)``
    is :meth:`__call__`.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        inference: inference_pb2_grpc.InferenceServiceStub,
        retry: RetryPolicy,
        rng: random.Random,
        stream_deadline_s: float,
    ) -> None:
        super().__init__(channel)  # type: ignore[no-untyped-call]  # generated code has no annotations
        self.helpers = CollectionClient(self, inference, retry, rng, stream_deadline_s)

    async def __call__(
        self,
        collection: str,
        items: Iterable[Item] | os.PathLike[str],
        *,
        create: bool = False,
        vector_size: int | None = None,
        embedding_model: str | None = None,
        distance: DistanceName = "cosine",
        format: FormatName | None = None,
        on_progress: ProgressCallback | None = None,
        job_threshold: int = 64,
        batch_size: int = 0,
        parallelism: int = 0,
    ) -> IngestResult:
        """``client.ingest(collection, items)``: write documents or points; returns once they are searchable.

        ``items`` is a list of texts, :class:`Document`, :class:`Point` or JSONL-shaped
        mappings (one kind per call), or a ``pathlib.Path`` to a JSONL, CSV, Parquet or text
        file. Points go in Upserts of 256; up to ``job_threshold`` documents in one Upsert
        (embedded as they arrive); more documents, and files, through an ingest job that the
        workers run in parallel batches (see this module's docstring). Cancelling
        the awaiting task cancels the job.

        Args:
            collection: One of the caller's collections.
            items: What to write.
            create: Create the collection first if it does not exist: for documents and
                text files with ``embedding_model`` (default: inference's default model),
                for points with ``vector_size`` (default: the first point's length).
                An existing collection is used as it is.
            vector_size: With ``create``: length of the vectors.
            embedding_model: With ``create``: the embedding model (``""``: the default one;
                pass it for a JSONL, CSV or Parquet file of documents).
            distance: With ``create``: how vectors are compared.
            format: A file's format; None: from its name (``.jsonl``, ``.csv``, ``.parquet``,
                ``.txt``/``.md``).
            on_progress: Called with the counts the server acknowledged, after each Upsert
                or each WatchJob update (at most about two a second).
            job_threshold: Most documents written by one Upsert rather than a job.
            batch_size: A job's points per batch, 64 to 256 (0: the server's default, 128).
            parallelism: A job's batches at once, 1 to 8 (0: the server's default, 4).

        Returns:
            What was written, with a job's skipped items and their reasons.

        Raises:
            grpc.aio.AioRpcError: INVALID_ARGUMENT naming the field (``documents[3].text``,
                ``points[0].vector``; for later Upserts a note says which items the batch
                held), NOT_FOUND (collection), FAILED_PRECONDITION (documents into a
                collection without an embedding model), RESOURCE_EXHAUSTED.
            JobFailed: A job ended FAILED or CANCELLED.
            ValueError, TypeError: Items that are none of the kinds above, or mixed.
        """
        return await self.helpers.ingest(
            collection,
            items,
            create=create,
            vector_size=vector_size,
            embedding_model=embedding_model,
            distance=distance,
            format=format,
            on_progress=on_progress,
            job_threshold=job_threshold,
            batch_size=batch_size,
            parallelism=parallelism,
        )
