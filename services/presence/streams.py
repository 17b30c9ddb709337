"""JetStream streams and KV buckets the presence service owns, declared at start."""

from __future__ import annotations

from nats.js.api import KeyValueConfig, StorageType, StreamConfig

STREAMS: tuple[StreamConfig, ...] = ()
KV_BUCKETS = (
    # One key per device, expiring when heartbeats stop: a device is online while its key lives.
    KeyValueConfig(bucket="presence", history=1, ttl=60, storage=StorageType.FILE),
)
