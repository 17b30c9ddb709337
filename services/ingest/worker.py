"""An ingest worker process: ``python -m services.ingest.worker``.

Stateless: everything it knows is in JetStream (the INGEST work queue, the job records) and
the source files. Start as many as the backlog needs, anywhere that reaches NATS and the
sources (``chatmesh_ingest_queue_backlog_items`` on the service's /metrics says how much is
waiting). Each runs up to ``worker_concurrency`` work items at once and picks the next one
fairly: planning first (it is quick and unblocks a job), then round-robin over the jobs'
owners, the owner with the fewest items in this worker first, so one user's big job never
keeps another user's waiting.

Where batches go: with the embedded store (no ``qdrant_url``) the ingest service is the only
writer of its shards, so a worker sends each batch to it over Upsert, as an SDK would, with
a service token acting for the job's owner; with a Qdrant server it writes to Qdrant itself
through the store interface. Documents are embedded through inference.Embed, also for the
owner.

SIGTERM: it stops taking work and hands its items in flight back (NAK), so another worker
takes them at once; SIGKILL costs only a redelivery after ``job_ack_wait_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry, start_http_server

from chatmesh.ingest.v1 import ingest_pb2 as pb
from chatmesh.ingest.v1 import ingest_pb2_grpc
from services.ingest.embedder import InferenceEmbedder
from services.ingest.errors import CollectionNotFound, StoreUnavailable
from services.ingest.items import ItemRunner, PermanentFailure, RunnerSettings, TransientFailure
from services.ingest.kvtable import KvTable
from services.ingest.metrics import WorkerMetrics
from services.ingest.protos import point_id_pb, struct_of
from services.ingest.queuestats import report_in
from services.ingest.records import JobRecord
from services.ingest.server import make_store, service_signer
from services.ingest.settings import IngestSettings
from services.ingest.sources import SourceFiles
from services.ingest.store.base import StoredPoint, VectorStore
from services.ingest.streams import IngestNames
from services.ingest.uploads import Uploads
from services.ingest.workqueue import WorkQueue
from services.runtime.bus import connect
from services.runtime.channels import peer_channel
from services.runtime.collector import tune_collector
from services.runtime.interceptors import ON_BEHALF_OF
from services.runtime.logs import configure_logging
from services.runtime.objectstore import ObjectStore
from services.runtime.peers import retry_after_s
from services.runtime.settings import load_settings
from services.runtime.tasks import cancel_and_wait
from services.runtime.tokens import ServiceTokenSigner

log = logging.getLogger("chatmesh.ingest.worker")

_TRANSIENT = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
)


class ServiceSink:
    """Batches to the ingest service over Upsert, acting for the job's owner (embedded store)."""

    def __init__(self, target: str, signer: ServiceTokenSigner, timeout_s: float) -> None:
        self._channel = peer_channel(target, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])
        self._stub = ingest_pb2_grpc.IngestServiceStub(self._channel)
        self._signer = signer
        self._timeout_s = timeout_s

    async def write(self, job: JobRecord, points: Sequence[StoredPoint]) -> None:
        request = pb.UpsertRequest(
            collection=job.collection,
            points=[pb.Point(id=point_id_pb(p.id), vector=p.vector, payload=struct_of(p.payload)) for p in points],
        )
        metadata = (("authorization", f"Bearer {self._signer.token()}"), (ON_BEHALF_OF, job.owner))
        try:
            await self._stub.Upsert(request, metadata=metadata, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code in _TRANSIENT:
                retry_s = retry_after_s(exc)
                raise TransientFailure(f"the ingest service answered {code.name}", retry_s) from None
            raise PermanentFailure(exc.details() or code.name) from None

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()


class StoreSink:
    """Batches straight into the Qdrant server (server store)."""

    def __init__(self, store: VectorStore) -> None:
        self._store = store

    async def write(self, job: JobRecord, points: Sequence[StoredPoint]) -> None:
        try:
            await self._store.upsert(job.store_name, points)
        except StoreUnavailable as exc:
            raise TransientFailure(str(exc)) from None
        except CollectionNotFound:
            raise PermanentFailure(f"collection {job.collection!r} is gone") from None


@dataclass
class _Source:
    """One consumer a worker can take work from."""

    name: str
    owner: str
    pending: int


class Worker:
    """Takes work from the INGEST queue fairly and runs it."""

    def __init__(
        self,
        js: JetStreamContext,
        names: IngestNames,
        runner: ItemRunner,
        concurrency: int,
        poll_s: float,
        metrics: WorkerMetrics,
    ) -> None:
        self._js = js
        self._names = names
        self._runner = runner
        self._concurrency = concurrency
        self._poll_s = poll_s
        self._metrics = metrics
        self._subs: dict[str, JetStreamContext.PullSubscription] = {}
        self._running: dict[asyncio.Task[None], tuple[str, str]] = {}  # task -> (consumer, owner)
        self._served: dict[str, float] = {}

    def _owner_load(self, owner: str) -> int:
        return sum(1 for _, o in self._running.values() if o == owner)

    def _mine(self, consumer: str) -> int:
        return sum(1 for c, _ in self._running.values() if c == consumer)

    async def _sources(self) -> list[_Source]:
        """Consumers to take work from, in the order to try them.

        Planning first; then jobs with undelivered items, owners with the least work here
        first, then the least recently served; last, jobs whose only items are out with
        some worker (one that died leaves them due for redelivery, which JetStream hands to
        the next fetch once their ack wait has passed).
        """
        infos = await self._js.consumers_info(self._names.stream)
        fresh: list[_Source] = []
        retry: list[_Source] = []
        for info in infos:
            if not info.name:
                continue
            config = info.config
            pending = int(info.num_pending or 0)
            out = int(info.num_ack_pending or 0)
            owner = (config.metadata or {}).get("owner", "")
            if pending > 0 and (info.name == self._names.PLANNER or out < int(config.max_ack_pending or 1)):
                fresh.append(_Source(info.name, owner, pending))
            elif out > self._mine(info.name):
                retry.append(_Source(info.name, owner, 0))
        planner = [s for s in fresh if s.name == self._names.PLANNER]
        jobs = [s for s in fresh if s.name != self._names.PLANNER]
        jobs.sort(
            key=lambda s: (self._owner_load(s.owner), self._served.get(s.owner, 0.0), self._served.get(s.name, 0.0))
        )
        return planner + jobs + retry

    async def _take(self, source: _Source) -> Msg | None:
        sub = self._subs.get(source.name)
        if sub is None:
            sub = self._subs[source.name] = await self._js.pull_subscribe_bind(source.name, stream=self._names.stream)
        try:
            msgs = await sub.fetch(1, timeout=0.2 if source.pending else 0.05)
        except TimeoutError:
            return None
        except Exception:  # the consumer went away (job ended, cancelled): forget it
            self._subs.pop(source.name, None)
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            return None
        return msgs[0] if msgs else None

    def _start(self, source: _Source, msg: Msg) -> None:
        now = time.monotonic()
        self._served[source.owner] = now
        self._served[source.name] = now
        handler = self._runner.plan if source.name == self._names.PLANNER else self._runner.item
        task = asyncio.create_task(self._guarded(handler, msg))
        self._running[task] = (source.name, source.owner)
        self._metrics.busy.labels(self._metrics.worker).set(len(self._running))
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        self._metrics.busy.labels(self._metrics.worker).set(len(self._running))

    async def _guarded(self, handler: object, msg: Msg) -> None:
        try:
            await handler(msg)  # type: ignore[operator]
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await msg.nak()
            raise
        except Exception:  # noqa: BLE001 - NATS or a peer failed mid-item: hand it back for a retry
            log.warning("work item failed; handed back", exc_info=True)
            self._metrics.items.labels(self._metrics.worker, "retried").inc()
            with contextlib.suppress(Exception):
                await msg.nak(delay=2.0)

    async def run(self, stop: asyncio.Event) -> None:
        """Take and run work until ``stop`` is set; then hand back what is in flight."""
        while not stop.is_set():
            if len(self._running) >= self._concurrency:
                await asyncio.wait(set(self._running), timeout=self._poll_s, return_when=asyncio.FIRST_COMPLETED)
                continue
            started = False
            try:
                for source in await self._sources():
                    if len(self._running) >= self._concurrency or stop.is_set():
                        break
                    msg = await self._take(source)
                    if msg is not None:
                        self._start(source, msg)
                        started = True
                        break  # look again: fairness is decided per item
            except Exception:  # noqa: BLE001 - NATS away: keep trying
                log.warning("could not look for work", exc_info=True)
            if not started:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._poll_s)
        await cancel_and_wait(list(self._running))
        # A pull subscription whose consumer is gone (its job ended) would hold up a drain.
        for sub in self._subs.values():
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()


async def run_worker(settings: IngestSettings, name: str, stop: asyncio.Event) -> None:
    """Run one worker until ``stop`` is set."""
    signer = service_signer(settings, name)
    if signer is None:
        raise SystemExit("chatmesh: CHATMESH_INGEST_SERVICE_TOKEN_PRIVATE_KEY_FILE is needed by workers")
    registry = CollectorRegistry(auto_describe=True)
    metrics = WorkerMetrics(registry, name)
    http = None
    if settings.metrics_port:
        http, _ = start_http_server(settings.metrics_port, addr=settings.host, registry=registry)
    nc = await connect(settings.nats, name)
    names = IngestNames(settings.bus_namespace)
    queue = WorkQueue(nc, names, settings.job_ack_wait_s, settings.nats.publish_timeout_s)
    await queue.declare(settings.job_retention_s, settings.worker_seen_ttl_s)
    table = await KvTable.open(nc.jetstream(), names.jobs_bucket, JobRecord)
    reporting = asyncio.create_task(
        report_in(await nc.jetstream().key_value(names.workers_bucket), name, settings.worker_seen_ttl_s / 3, stop)
    )
    embedder = InferenceEmbedder(
        settings.inference_target, settings.inference_timeout_s, signer, settings.embed_batch_texts
    )
    store: VectorStore | None = None
    sink: ServiceSink | StoreSink
    if settings.embedded:
        sink = ServiceSink(settings.ingest_target, signer, settings.default_deadline_s)
    else:
        store = make_store(settings)
        sink = StoreSink(store)
    files = SourceFiles(settings.import_root, settings.data_dir / "cache" / name, ObjectStore(settings.s3))
    runner = ItemRunner(
        table,
        queue,
        files,
        sink,
        embedder,
        store,
        RunnerSettings(
            max_attempts=settings.job_max_attempts,
            backoff_s=settings.job_retry_backoff_s,
            backoff_max_s=settings.job_retry_backoff_max_s,
            max_failures=settings.max_failures_recorded,
            chunk_batches=settings.job_chunk_batches,
            passage_max_chars=settings.passage_max_chars,
            passage_overlap_chars=settings.passage_overlap_chars,
            heartbeat_s=max(0.5, settings.job_ack_wait_s / 3),
            bulk_min_points=settings.bulk_min_points,
            max_payload_bytes=settings.max_payload_bytes,
        ),
        metrics,
        Uploads(settings.import_root, settings.max_upload_bytes, settings.upload_retention_s),
    )
    worker = Worker(nc.jetstream(), names, runner, settings.worker_concurrency, settings.worker_poll_s, metrics)
    log.info("worker started", extra={"worker": name, "store": "embedded" if settings.embedded else "server"})
    try:
        await worker.run(stop)
    finally:
        stop.set()
        await reporting
        if isinstance(sink, ServiceSink):
            await sink.close()
        if store is not None:
            await store.close()
        await embedder.close()
        await nc.drain()
        if http is not None:
            http.shutdown()
        log.info("worker stopped", extra={"worker": name})


def main() -> None:
    """``python -m services.ingest.worker``: run until SIGTERM."""
    settings = load_settings(IngestSettings)
    name = settings.worker_name or f"ingest-worker-{os.getpid()}"
    configure_logging(name, settings.log_level)
    tune_collector(settings.gc_young_threshold)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, name, stop)

    asyncio.run(serve())


if __name__ == "__main__":
    main()
