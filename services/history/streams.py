"""JetStream streams and KV buckets the history service owns, declared at start."""

from __future__ import annotations

from nats.js.api import DiscardPolicy, KeyValueConfig, RetentionPolicy, StorageType, StreamConfig

from services.runtime.subjects import CHAT_STREAM, CHAT_SUBJECTS

STREAMS = (
    # Every event for a user, replayed to a reconnecting device from its last sequence.
    # Seven days of retention bound the replay; older gaps get a resync event.
    StreamConfig(
        name=CHAT_STREAM,
        subjects=[CHAT_SUBJECTS],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=7 * 86_400,
        max_msg_size=64 * 1024,
        duplicate_window=120,
        discard=DiscardPolicy.OLD,
        # Session holds a consumer per connected device (its replay cursor) plus one for its live
        # fan-out; nats-server 2.15 caps a stream at 1,000 consumers unless it says otherwise.
        max_consumers=100_000,
    ),
)
KV_BUCKETS: tuple[KeyValueConfig, ...] = ()
