"""IngestService: proto messages in, domain calls, proto messages out."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from chatmesh.common.v1 import common_pb2
from chatmesh.ingest.v1 import ingest_pb2 as pb
from chatmesh.ingest.v1 import ingest_pb2_grpc
from services.ingest import progress, protos
from services.ingest.collections import Collections, CollectionView, NewCollection
from services.ingest.embedder import Caller
from services.ingest.jobs import Jobs, SourceAsk
from services.ingest.metrics import IngestMetrics
from services.ingest.queuestats import QueueStatsReader
from services.ingest.records import JobRecord, SnapshotRecord, SourceFormatName
from services.ingest.search import SearchAsk, Searcher
from services.ingest.snapshots import Snapshots, SnapshotTargets, checked_schedule
from services.ingest.uploads import Uploads
from services.ingest.upserts import Upserter
from services.ingest.wire import PointBatch
from services.runtime.errors import InvalidArgument
from services.runtime.interceptors import Context, current_principal

_FORMATS: dict[int, SourceFormatName] = {
    pb.SOURCE_FORMAT_UNSPECIFIED: "",
    pb.SOURCE_FORMAT_JSONL: "jsonl",
    pb.SOURCE_FORMAT_CSV: "csv",
    pb.SOURCE_FORMAT_PARQUET: "parquet",
    pb.SOURCE_FORMAT_TEXT: "text",
}
_STATES = {
    "queued": pb.JOB_STATE_QUEUED,
    "running": pb.JOB_STATE_RUNNING,
    "succeeded": pb.JOB_STATE_SUCCEEDED,
    "completed_with_errors": pb.JOB_STATE_COMPLETED_WITH_ERRORS,
    "failed": pb.JOB_STATE_FAILED,
    "cancelled": pb.JOB_STATE_CANCELLED,
}


def _caller(context: Context) -> Caller:
    authorization = next(
        (v for k, v in context.invocation_metadata() or () if k == "authorization" and isinstance(v, str)), ""
    )
    return Caller(current_principal().user_id, authorization)


def job_progress(job: JobRecord, now: float) -> pb.JobProgress:
    """A job record's progress as the contract's JobProgress."""
    per_s, eta = progress.rate(job, now)
    return pb.JobProgress(
        job_id=job.job_id,
        state=_STATES[job.state],
        points_done=job.points_done,
        points_total=job.points_total,
        points_failed=job.points_failed,
        batches_done=job.batches_done,
        batches_total=job.batches_total,
        last_error=job.last_error,
        points_per_second=per_s,
        updated_at=protos.timestamp(job.updated_at),
        eta_seconds=eta,
    )


def job_pb(job: JobRecord) -> pb.Job:
    """A job record as the contract's Job."""
    return pb.Job(
        job_id=job.job_id,
        collection=job.collection,
        batch_size=job.batch_size,
        parallelism=job.parallelism,
        progress=job_progress(job, time.time()),
        error=job.error,
        created_at=protos.timestamp(job.created_at),
        started_at=protos.timestamp(job.started_at),
        finished_at=protos.timestamp(job.finished_at),
        failures=[pb.ItemFailure(position=f.position, reason=f.reason) for f in job.failures],
    )


def snapshot_pb(snapshot: SnapshotRecord) -> pb.Snapshot:
    """A snapshot record as the contract's Snapshot."""
    return pb.Snapshot(
        snapshot_id=snapshot.snapshot_id,
        collection=snapshot.collection,
        target=protos.target_pb(snapshot.target),
        file_name=snapshot.file_name,
        size_bytes=snapshot.size_bytes,
        points_count=snapshot.points_count,
        vector_size=snapshot.vector_size,
        distance=protos.DISTANCES_PB[snapshot.distance],
        embedding_model=snapshot.embedding_model,
        created_at=protos.timestamp(snapshot.created_at),
        sha256=snapshot.sha256,
        scheduled=snapshot.scheduled,
    )


def _collection(view: CollectionView) -> pb.Collection:
    return protos.collection_pb(view.record, view.points_count)


@dataclass
class IngestDomain:
    """Everything the servicer translates to."""

    collections: Collections
    upserter: Upserter
    searcher: Searcher
    jobs: Jobs
    snapshots: Snapshots
    targets: SnapshotTargets
    metrics: IngestMetrics
    snapshot_min_interval_s: int
    uploads: Uploads
    queue_stats: QueueStatsReader


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    """Translates the contract to the ingest domain."""

    def __init__(self, domain: IngestDomain) -> None:
        self._d = domain

    async def CreateCollection(
        self, request: pb.CreateCollectionRequest, context: Context
    ) -> pb.CreateCollectionResponse:
        schedule = (
            checked_schedule(
                protos.schedule_record(request.snapshot_schedule),
                "snapshot_schedule",
                self._d.snapshot_min_interval_s,
                self._d.targets,
            )
            if request.HasField("snapshot_schedule")
            else None
        )
        view = await self._d.collections.create(
            _caller(context),
            NewCollection(
                name=request.name,
                vector_size=request.vector_size,
                distance=protos.DISTANCES[request.distance],
                embedding_model=request.embedding_model,
                payload_indexes=[(i.key, protos.INDEXES[i.type]) for i in request.payload_indexes],
                schedule=schedule,
            ),
        )
        return pb.CreateCollectionResponse(collection=_collection(view))

    async def ListCollections(self, request: pb.ListCollectionsRequest, context: Context) -> pb.ListCollectionsResponse:
        page = await self._d.collections.page(
            current_principal().user_id, request.page.page_size, request.page.page_token
        )
        return pb.ListCollectionsResponse(
            collections=[_collection(v) for v in page.items],
            page=common_pb2.PageResponse(next_page_token=page.next_token),
        )

    async def DeleteCollection(
        self, request: pb.DeleteCollectionRequest, context: Context
    ) -> pb.DeleteCollectionResponse:
        await self._d.collections.delete(current_principal().user_id, request.name)
        return pb.DeleteCollectionResponse()

    async def Upsert(self, request: pb.UpsertRequest, context: Context) -> pb.UpsertResponse:
        caller = _caller(context)
        started = time.perf_counter()
        if isinstance(request, PointBatch):  # the common bulk case, decoded by services.ingest.wire
            written = await self._d.upserter.batch(caller, request)
            via = "upsert"
        elif request.documents:
            written = await self._d.upserter.documents(
                caller, request.collection, [protos.document_input(d) for d in request.documents]
            )
            via = "document"
        else:
            written = await self._d.upserter.points(
                caller, request.collection, [protos.point_input(p) for p in request.points]
            )
            via = "upsert"
        self._d.metrics.batch_seconds.labels(via).observe(time.perf_counter() - started)
        self._d.metrics.points.labels(via).inc(written.points)
        return pb.UpsertResponse(points_upserted=written.points, documents_embedded=written.documents)

    async def StreamUpsert(
        self, request_iterator: AsyncIterator[pb.StreamUpsertRequest], context: Context
    ) -> pb.StreamUpsertResponse:
        # Headers at once: the gateway's request timeout then leaves a long stream alone.
        await context.send_initial_metadata(())
        caller = _caller(context)
        batches = points = documents = 0
        collection = ""
        iterator = aiter(request_iterator)
        while True:
            try:
                request = await anext(iterator)
            except StopAsyncIteration:
                break
            except InvalidArgument as exc:
                raise InvalidArgument(f"batch {batches}: {exc.field}", exc.problem) from None
            if not collection:
                collection = request.collection
            elif request.collection != collection:
                raise InvalidArgument(
                    f"batch {batches}: collection", f"is {request.collection!r}; this stream writes {collection!r}"
                )
            try:
                if request.documents:
                    written = await self._d.upserter.documents(
                        caller, collection, [protos.document_input(d) for d in request.documents]
                    )
                else:
                    written = await self._d.upserter.points(
                        caller, collection, [protos.point_input(p) for p in request.points]
                    )
            except InvalidArgument as exc:
                raise InvalidArgument(f"batch {batches}: {exc.field}", exc.problem) from None
            batches += 1
            points += written.points
            documents += written.documents
            self._d.metrics.points.labels("stream").inc(written.points)
        return pb.StreamUpsertResponse(batches=batches, points_upserted=points, documents_embedded=documents)

    async def StartJob(self, request: pb.StartJobRequest, context: Context) -> pb.StartJobResponse:
        source = request.source
        kind = source.WhichOneof("kind")
        fmt = _FORMATS[source.format]
        if kind == "documents":
            ask = SourceAsk("documents", documents=[protos.document_input(d) for d in source.documents.documents])
        elif kind == "path":
            ask = SourceAsk("path", path=source.path, format=fmt)
        elif kind == "upload_id":
            ask = SourceAsk("upload", upload_id=source.upload_id, format=fmt)
        else:
            ask = SourceAsk("s3", endpoint=source.s3.endpoint, bucket=source.s3.bucket, key=source.s3.key, format=fmt)
        job = await self._d.jobs.start(
            current_principal().user_id, request.collection, ask, request.batch_size, request.parallelism
        )
        return pb.StartJobResponse(job=job_pb(job))

    async def WatchJob(self, request: pb.WatchJobRequest, context: Context) -> AsyncIterator[pb.WatchJobResponse]:
        async for job in self._d.jobs.watch(current_principal().user_id, request.job_id):
            yield pb.WatchJobResponse(progress=job_progress(job, time.time()))

    async def GetJob(self, request: pb.GetJobRequest, context: Context) -> pb.GetJobResponse:
        return pb.GetJobResponse(job=job_pb(await self._d.jobs.get(current_principal().user_id, request.job_id)))

    async def ListJobs(self, request: pb.ListJobsRequest, context: Context) -> pb.ListJobsResponse:
        page = await self._d.jobs.page(
            current_principal().user_id, request.collection, request.page.page_size, request.page.page_token
        )
        return pb.ListJobsResponse(
            jobs=[job_pb(j) for j in page.items], page=common_pb2.PageResponse(next_page_token=page.next_token)
        )

    async def CancelJob(self, request: pb.CancelJobRequest, context: Context) -> pb.CancelJobResponse:
        return pb.CancelJobResponse(job=job_pb(await self._d.jobs.cancel(current_principal().user_id, request.job_id)))

    async def GetQueueStats(self, request: pb.GetQueueStatsRequest, context: Context) -> pb.GetQueueStatsResponse:
        stats = await self._d.queue_stats.read(current_principal().user_id)
        return pb.GetQueueStatsResponse(
            pending_items=stats.pending_items,
            in_flight_items=stats.in_flight_items,
            redelivered_items=stats.redelivered_items,
            jobs_in_flight=stats.jobs_in_flight,
            my_jobs_in_flight=stats.my_jobs_in_flight,
            workers_seen=stats.workers_seen,
            points_per_second=stats.points_per_second,
            my_points_per_second=stats.my_points_per_second,
            sampled_at=protos.timestamp(stats.sampled_at),
        )

    async def Search(self, request: pb.SearchRequest, context: Context) -> pb.SearchResponse:
        hits = await self._d.searcher.search(
            _caller(context),
            SearchAsk(
                collection=request.collection,
                vector=request.vector,
                text=request.text,
                limit=request.limit,
                score_threshold=request.score_threshold if request.HasField("score_threshold") else None,
                matches=[protos.match_of(m) for m in request.filter],
                with_vectors=request.with_vectors,
            ),
        )
        return pb.SearchResponse(points=[protos.scored_point(h) for h in hits])

    async def CreateSnapshot(self, request: pb.CreateSnapshotRequest, context: Context) -> pb.CreateSnapshotResponse:
        snapshot = await self._d.snapshots.create(
            current_principal().user_id, request.collection, protos.target_record(request.target)
        )
        return pb.CreateSnapshotResponse(snapshot=snapshot_pb(snapshot))

    async def ListSnapshots(self, request: pb.ListSnapshotsRequest, context: Context) -> pb.ListSnapshotsResponse:
        page = await self._d.snapshots.page(
            current_principal().user_id, request.collection, request.page.page_size, request.page.page_token
        )
        return pb.ListSnapshotsResponse(
            snapshots=[snapshot_pb(s) for s in page.items],
            page=common_pb2.PageResponse(next_page_token=page.next_token),
        )

    async def RestoreSnapshot(self, request: pb.RestoreSnapshotRequest, context: Context) -> pb.RestoreSnapshotResponse:
        view = await self._d.snapshots.restore(
            current_principal().user_id, request.snapshot_id, request.collection, request.replace_existing
        )
        return pb.RestoreSnapshotResponse(collection=_collection(view))

    async def DeleteSnapshot(self, request: pb.DeleteSnapshotRequest, context: Context) -> pb.DeleteSnapshotResponse:
        await self._d.snapshots.delete(current_principal().user_id, request.snapshot_id)
        return pb.DeleteSnapshotResponse()

    async def UploadSource(
        self, request_iterator: AsyncIterator[pb.UploadSourceRequest], context: Context
    ) -> pb.UploadSourceResponse:
        # Headers at once: the gateway's request timeout then leaves a long upload alone.
        await context.send_initial_metadata(())

        async def parts() -> AsyncIterator[tuple[str, bytes]]:
            async for request in request_iterator:
                yield request.file_name, request.chunk

        upload = await self._d.uploads.receive(current_principal().user_id, parts())
        return pb.UploadSourceResponse(upload_id=upload.upload_id, size_bytes=upload.size_bytes, sha256=upload.sha256)

    async def SetSnapshotSchedule(
        self, request: pb.SetSnapshotScheduleRequest, context: Context
    ) -> pb.SetSnapshotScheduleResponse:
        schedule = (
            checked_schedule(
                protos.schedule_record(request.schedule), "schedule", self._d.snapshot_min_interval_s, self._d.targets
            )
            if request.HasField("schedule")
            else None
        )
        record = await self._d.collections.set_schedule(current_principal().user_id, request.collection, schedule)
        return pb.SetSnapshotScheduleResponse(collection=_collection(await self._d.collections.view(record)))
