"""JetStream streams and KV buckets the inference service owns, declared at start."""

from __future__ import annotations

from nats.js.api import KeyValueConfig, StreamConfig

STREAMS: tuple[StreamConfig, ...] = ()
KV_BUCKETS: tuple[KeyValueConfig, ...] = ()
