"""Prometheus metrics of the ingest service and its workers (on each process's /metrics).

Service: points written, batch latency, store errors, store up, the work queue's backlog
(``chatmesh_ingest_queue_backlog_items``: work items waiting or in flight; what an
autoscaler scales workers on, e.g. a KEDA Prometheus trigger), redeliveries and workers busy
as JetStream counts them. Worker: items taken, redelivered, failed, and its own busy gauge.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.runtime.metrics import LATENCY_BUCKETS


class IngestMetrics:
    """The ingest service's own metrics, in its server's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.points = Counter(
            "chatmesh_ingest_points_written_total",
            "Points written into the store, by how they came (upsert, stream, document).",
            ["via"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "chatmesh_ingest_batch_seconds",
            "Time to check and write one batch into the store (documents: embedding included).",
            ["via"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.store_errors = Counter(
            "chatmesh_ingest_store_errors_total",
            "Store calls that failed (Qdrant down or refusing).",
            registry=registry,
        )
        self.store_up = Gauge(
            "chatmesh_ingest_store_up", "1 while the vector store answers its health check, else 0.", registry=registry
        )
        self.backlog = Gauge(
            "chatmesh_ingest_queue_backlog_items",
            "Work items of all jobs waiting for a worker or being worked on (scale workers on this).",
            registry=registry,
        )
        self.waiting = Gauge(
            "chatmesh_ingest_queue_waiting_items", "Work items waiting for a worker.", registry=registry
        )
        self.redelivered = Gauge(
            "chatmesh_ingest_queue_redelivered_items",
            "Work items handed out again after a worker failed or vanished (now, across jobs).",
            registry=registry,
        )
        self.busy = Gauge(
            "chatmesh_ingest_queue_items_in_flight",
            "Work items being worked on by workers right now.",
            registry=registry,
        )
        self.active_jobs = Gauge(
            "chatmesh_ingest_jobs_active", "Jobs queued or running (with work items left).", registry=registry
        )


class WorkerMetrics:
    """One worker process's metrics."""

    def __init__(self, registry: CollectorRegistry, worker: str) -> None:
        self.items = Counter(
            "chatmesh_ingest_worker_items_total",
            "Work items finished, by outcome.",
            ["worker", "outcome"],
            registry=registry,
        )
        self.redeliveries = Counter(
            "chatmesh_ingest_worker_redeliveries_total",
            "Work items this worker got that an earlier delivery had not finished.",
            ["worker"],
            registry=registry,
        )
        self.points = Counter(
            "chatmesh_ingest_worker_points_total", "Points written by this worker.", ["worker"], registry=registry
        )
        self.failed_points = Counter(
            "chatmesh_ingest_worker_failed_points_total", "Points skipped as failed.", ["worker"], registry=registry
        )
        self.batch_seconds = Histogram(
            "chatmesh_ingest_worker_batch_seconds",
            "Time to read, embed and write one batch.",
            ["worker"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.busy = Gauge(
            "chatmesh_ingest_worker_busy_items",
            "Work items this worker is working on now.",
            ["worker"],
            registry=registry,
        )
        self.retries = Counter(
            "chatmesh_ingest_worker_batch_retries_total",
            "Batches retried after a transient failure (store or inference).",
            ["worker"],
            registry=registry,
        )
        self.worker = worker
