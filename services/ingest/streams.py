"""JetStream streams and KV buckets the ingest service owns, declared at start."""

from __future__ import annotations

from nats.js.api import KeyValueConfig, RetentionPolicy, StorageType, StreamConfig

STREAMS = (
    # Ingest jobs: a work queue, each job taken by exactly one worker.
    StreamConfig(
        name="INGEST",
        subjects=["ingest.jobs.>"],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        max_age=7 * 86_400,
        duplicate_window=120,
    ),
)
KV_BUCKETS: tuple[KeyValueConfig, ...] = ()
