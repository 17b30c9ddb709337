"""JetStream streams and KV buckets the forms service owns, declared at start."""

from __future__ import annotations

from nats.js.api import KeyValueConfig, RetentionPolicy, StorageType, StreamConfig

STREAMS = (
    # Validated submissions; every consumer plug-in is a durable consumer on it.
    StreamConfig(
        name="FORMS",
        subjects=["forms.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=30 * 86_400,
        duplicate_window=120,
    ),
    # Submissions a consumer gave up on after its max deliveries, kept for Redrive.
    StreamConfig(
        name="FORMS_DLQ",
        subjects=["forms_dlq.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=30 * 86_400,
    ),
)
KV_BUCKETS: tuple[KeyValueConfig, ...] = ()
