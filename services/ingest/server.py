"""Wiring of the ingest service: settings -> NATS (work queue, record buckets), store, peers, domain, server.

Background tasks: the store's health check (the service is NOT_SERVING while the store does
not answer), the work queue's backlog for /metrics, and the snapshot scheduler.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from grpc_health.v1 import health_pb2
from prometheus_client import CollectorRegistry

from chatmesh.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from services.ingest.collections import Collections
from services.ingest.embedder import InferenceEmbedder
from services.ingest.jobs import JobLimits, Jobs
from services.ingest.kvtable import KvTable
from services.ingest.metrics import IngestMetrics
from services.ingest.queuestats import QueueStatsReader
from services.ingest.records import CollectionRecord, JobRecord, SnapshotRecord
from services.ingest.search import Searcher
from services.ingest.servicer import IngestDomain, IngestServicer
from services.ingest.settings import IngestSettings
from services.ingest.snapshots import Snapshots, SnapshotTargets
from services.ingest.sources import SourceFiles
from services.ingest.store.base import VectorStore
from services.ingest.store.edge import EdgeStore
from services.ingest.store.server import ServerOptions, ServerStore
from services.ingest.streams import IngestNames
from services.ingest.uploads import Uploads
from services.ingest.upserts import Upserter, UserGate
from services.ingest.wire import decode_upsert
from services.ingest.workqueue import WorkQueue
from services.runtime.bus import connect
from services.runtime.errors import ChatmeshError
from services.runtime.objectstore import ObjectStore
from services.runtime.server import ServiceBinding, ServiceServer, create_server, run
from services.runtime.tasks import cancel_and_wait
from services.runtime.tokens import ServiceTokenSigner

log = logging.getLogger("chatmesh.ingest")

SERVICE_NAME = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name


def make_store(settings: IngestSettings) -> VectorStore:
    """The embedded store, or the server store when ``qdrant_url`` is set."""
    if settings.embedded:
        return EdgeStore(settings.data_dir / "shards", settings.edge_threads, settings.edge_flush_interval_s)
    return ServerStore(
        settings.qdrant_urls,
        settings.qdrant_grpc_port or None,
        ServerOptions(
            shard_number=settings.qdrant_shard_number,
            replication_factor=settings.qdrant_replication_factor,
            write_consistency_factor=settings.qdrant_write_consistency_factor,
            indexing_threshold_kb=settings.qdrant_indexing_threshold_kb,
            timeout_s=settings.qdrant_timeout_s,
        ),
    )


def service_signer(settings: IngestSettings, name: str) -> ServiceTokenSigner | None:
    """This process's service-token signer, when it has the key."""
    if settings.service_token_private_key_file is None:
        return None
    return ServiceTokenSigner.from_file(
        settings.service_token_private_key_file, settings.token_issuer, name, settings.service_token_ttl_s
    )


@dataclass
class IngestApp:
    """The built server and the domain behind it (tests reach into it)."""

    server: ServiceServer
    domain: IngestDomain
    store: VectorStore
    queue: WorkQueue


async def _watch_store(app: ServiceServer, store: VectorStore, metrics: IngestMetrics, interval_s: float) -> None:
    serving: bool | None = None
    while True:
        try:
            async with asyncio.timeout(max(1.0, interval_s)):
                await store.check()
            up = True
        except (ChatmeshError, TimeoutError):
            up = False
        if up != serving:
            status = health_pb2.HealthCheckResponse.SERVING if up else health_pb2.HealthCheckResponse.NOT_SERVING
            for name in (SERVICE_NAME, ""):
                await app.health.set(name, status)
            if serving is not None:
                log.warning("vector store %s", "back" if up else "unreachable: NOT_SERVING")
            serving = up
        metrics.store_up.set(1 if up else 0)
        if not up:
            metrics.store_errors.inc()
        await asyncio.sleep(interval_s)


async def _export_backlog(queue: WorkQueue, metrics: IngestMetrics, interval_s: float) -> None:
    while True:
        try:
            backlog = await queue.backlog()
        except ChatmeshError:
            pass
        else:
            metrics.backlog.set(backlog.waiting + backlog.in_flight)
            metrics.waiting.set(backlog.waiting)
            metrics.busy.set(backlog.in_flight)
            metrics.redelivered.set(backlog.redelivered)
            metrics.active_jobs.set(backlog.jobs)
        await asyncio.sleep(interval_s)


async def _sweep_uploads(uploads: Uploads) -> None:
    while True:
        await asyncio.sleep(600)
        try:
            await uploads.sweep()
        except OSError:
            log.warning("could not sweep old uploads", exc_info=True)


async def assemble(settings: IngestSettings) -> IngestApp:
    """Connect to NATS and the store, declare the work queue, and build the (not started) server."""
    cleanups: list[Callable[[], Awaitable[None]]] = []
    try:
        signer = service_signer(settings, "ingest")
        nc = await connect(settings.nats, "ingest")
        cleanups.append(nc.drain)
        names = IngestNames(settings.bus_namespace)
        queue = WorkQueue(nc, names, settings.job_ack_wait_s, settings.nats.publish_timeout_s)
        await queue.declare(settings.job_retention_s, settings.worker_seen_ttl_s)
        js = nc.jetstream()
        collection_table = await KvTable.open(js, names.collections_bucket, CollectionRecord)
        job_table = await KvTable.open(js, names.jobs_bucket, JobRecord)
        snapshot_table = await KvTable.open(js, names.snapshots_bucket, SnapshotRecord)
        store = make_store(settings)
        cleanups.append(store.close)
        embedder = InferenceEmbedder(
            settings.inference_target, settings.inference_timeout_s, signer, settings.embed_batch_texts
        )
        cleanups.append(embedder.close)
        objects = ObjectStore(settings.s3)
        collections = Collections(
            collection_table, store, embedder, settings.max_collections_per_user, settings.retry_after_s
        )
        upserter = Upserter(
            collections,
            embedder,
            UserGate(settings.max_inflight_upserts_per_user, settings.retry_after_s),
            settings.max_payload_bytes,
            settings.passage_max_chars,
            settings.passage_overlap_chars,
        )
        files = SourceFiles(settings.import_root, settings.data_dir / "cache" / "service", objects)
        uploads = Uploads(settings.import_root, settings.max_upload_bytes, settings.upload_retention_s)
        jobs = Jobs(
            job_table,
            collections,
            queue,
            files,
            JobLimits(
                max_active_per_user=settings.max_active_jobs_per_user,
                retry_after_s=settings.retry_after_s,
                max_payload_bytes=settings.max_payload_bytes,
                passage_max_chars=settings.passage_max_chars,
                passage_overlap_chars=settings.passage_overlap_chars,
                chunk_batches=settings.job_chunk_batches,
            ),
            uploads,
        )
        collections.active_job = jobs.active_job_into
        targets = SnapshotTargets(settings.snapshot_root, objects)
        snapshots = Snapshots(snapshot_table, collections, targets, settings.data_dir / "snapshot-work")
        domain = IngestDomain(
            collections=collections,
            upserter=upserter,
            searcher=Searcher(collections, embedder),
            jobs=jobs,
            snapshots=snapshots,
            targets=targets,
            metrics=IngestMetrics(CollectorRegistry()),
            snapshot_min_interval_s=settings.snapshot_min_interval_s,
            uploads=uploads,
            queue_stats=QueueStatsReader(js, names, job_table, await js.key_value(names.workers_bucket)),
        )
        binding = ServiceBinding(
            SERVICE_NAME,
            ingest_pb2_grpc.add_IngestServiceServicer_to_server,
            IngestServicer(domain),
            request_decoders={f"/{SERVICE_NAME}/Upsert": decode_upsert},
        )
        server = create_server("ingest", settings, [binding])
        metrics = domain.metrics = IngestMetrics(server.metrics.registry)
    except BaseException:
        for cleanup in reversed(cleanups):
            try:
                await cleanup()
            except Exception:  # noqa: BLE001 - the start failed already; that error is the one to raise
                log.warning("cleanup after a failed start failed", exc_info=True)
        raise
    tasks: list[asyncio.Task[None]] = []

    async def start_tasks() -> None:
        tasks.extend(
            [
                asyncio.create_task(_watch_store(server, store, metrics, settings.health_interval_s)),
                asyncio.create_task(_export_backlog(queue, metrics, settings.backlog_interval_s)),
                asyncio.create_task(snapshots.scheduler(settings.snapshot_scheduler_tick_s)),
                asyncio.create_task(_sweep_uploads(uploads)),
            ]
        )

    async def stop_tasks() -> None:
        await cancel_and_wait(tasks)

    server.on_start.append(start_tasks)
    # ServiceServer runs on_stop last-in first-out: tasks, then the embedder, store and NATS.
    server.on_stop.extend([*cleanups, stop_tasks])
    return IngestApp(server, domain, store, queue)


async def build(settings: IngestSettings) -> ServiceServer:
    """The ingest service's server, ready to start."""
    return (await assemble(settings)).server


def main() -> None:
    """Run the ingest service until SIGTERM."""
    run("ingest", IngestSettings, build)
