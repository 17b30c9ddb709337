"""Prometheus metrics of the forms pipeline.

Workers count what they handle (``chatmesh_forms_consumer_*_total``, batch durations) on
their own /metrics port. The service samples every consumer's JetStream counters
(services/forms/stats.py) and exports them as gauges on its /metrics, the same numbers
ConsumerStats answers: backlog, in flight, redelivered, dead letters, processed per
minute, age of the oldest unprocessed submission.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.runtime.metrics import LATENCY_BUCKETS


class WorkerMetrics:
    """What a worker process counts, per consumer."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["consumer"]
        self.processed = Counter(
            "chatmesh_forms_consumer_processed_total", "Deliveries handled and committed.", labels, registry=registry
        )
        self.failed = Counter(
            "chatmesh_forms_consumer_failed_total",
            "Deliveries that failed and will be retried.",
            labels,
            registry=registry,
        )
        self.dead_lettered = Counter(
            "chatmesh_forms_consumer_dead_lettered_total", "Deliveries moved to FORMS_DLQ.", labels, registry=registry
        )
        self.batch_errors = Counter(
            "chatmesh_forms_consumer_batch_errors_total",
            "Batches that failed before their statuses were written (redelivered).",
            labels,
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "chatmesh_forms_consumer_batch_seconds",
            "Time from a batch in hand to its acknowledgements.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


class ConsumerGauges:
    """The service's view of every consumer (ConsumerStats as Prometheus gauges)."""

    NAMES: Sequence[tuple[str, str]] = (
        ("pending", "Backlog: submissions not yet delivered to the consumer."),
        ("ack_pending", "Submissions delivered to the consumer and not yet acknowledged."),
        ("redelivered", "Submissions delivered more than once and not yet acknowledged."),
        ("dead_lettered", "The consumer's dead letters waiting in FORMS_DLQ."),
        ("processed_per_minute", "Deliveries the consumer finished per minute (last minute)."),
        ("oldest_unprocessed_age_seconds", "Age of the oldest submission the consumer has not finished."),
    )

    def __init__(self, registry: CollectorRegistry) -> None:
        self.gauges = {
            name: Gauge(f"chatmesh_forms_consumer_{name}", text, ["consumer"], registry=registry)
            for name, text in self.NAMES
        }

    def set(self, consumer: str, values: dict[str, float]) -> None:
        """Set one consumer's gauges."""
        for name, gauge in self.gauges.items():
            gauge.labels(consumer).set(values.get(name, 0.0))
