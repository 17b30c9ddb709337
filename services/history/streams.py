"""JetStream streams and KV buckets the history service owns, declared at start."""

from __future__ import annotations

from nats.js.api import DiscardPolicy, KeyValueConfig, RetentionPolicy, StorageType, StreamConfig

STREAMS = (
    # Every event for a user, replayed to a reconnecting device from its last sequence.
    # Seven days of retention bound the replay; older gaps get a resync event.
    StreamConfig(
        name="CHAT",
        subjects=["chat.user.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=7 * 86_400,
        max_msg_size=64 * 1024,
        duplicate_window=120,
        discard=DiscardPolicy.OLD,
    ),
)
KV_BUCKETS: tuple[KeyValueConfig, ...] = ()
