"""JetStream streams and KV buckets the presence service owns, declared at start."""

from __future__ import annotations

from nats.js.api import KeyValueConfig, StorageType, StreamConfig

STREAMS: tuple[StreamConfig, ...] = ()

#: Max age of an entry of the presence bucket. Expiry is the sweeper's job (device
#: TTL, at most 300 s); the max age only collects entries nobody rewrote. It is longer
#: than any device TTL so that replicas restarted within it still see devices that
#: went quiet while none ran, and save their last seen.
BUCKET_MAX_AGE_S = 600


def presence_bucket(name: str = "presence") -> KeyValueConfig:
    """The KV bucket of device entries (``<user_id>.<device_id>``) and replica registrations."""
    return KeyValueConfig(bucket=name, history=1, ttl=BUCKET_MAX_AGE_S, storage=StorageType.FILE, max_value_size=1024)
