"""Settings of the presence service (env prefix CHATMESH_PRESENCE_)."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from services.runtime.bus import NatsSettings
from services.runtime.cql import CqlSettings
from services.runtime.settings import ServiceSettings


class PresenceSettings(ServiceSettings):
    """Presence service settings."""

    model_config = SettingsConfigDict(env_prefix="CHATMESH_PRESENCE_")

    port: int = Field(50053, ge=0, le=65535, description="gRPC port; 0 picks a free one (tests).")
    nats: NatsSettings = Field(default_factory=NatsSettings, description="NATS (CHATMESH_PRESENCE_NATS__URL).")
    cql: CqlSettings = Field(
        default_factory=CqlSettings, description="CQL cluster holding last seen (CHATMESH_PRESENCE_CQL__HOSTS...)."
    )
    kv_bucket: str = Field(
        "presence",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="JetStream KV bucket of device entries, shared by every presence replica.",
    )
    device_ttl_s: int = Field(
        60,
        ge=2,
        le=300,
        description="Seconds a device counts as connected after its last heartbeat; Heartbeat asks for one "
        "every half of this.",
    )
    heartbeat_min_interval_s: float = Field(
        1.0, ge=0, le=60, description="Heartbeats of one device closer together than this get RESOURCE_EXHAUSTED."
    )
    debounce_s: float = Field(
        1.0,
        ge=0.01,
        le=30,
        description="Window over which a user's presence changes are coalesced: at most one change a window, "
        "with the latest state, sent at the window's end.",
    )
    sweep_interval_s: float = Field(
        1.0, gt=0, le=30, description="How often devices whose TTL passed are expired (the expiry resolution)."
    )
    offline_retention_s: int = Field(
        600,
        ge=1,
        le=86_400,
        description="Seconds an offline or looked-up user stays in memory before GetPresence reads CQL again.",
    )
    offline_cache_size: int = Field(
        100_000, ge=100, le=10_000_000, description="Most offline or looked-up users kept in memory."
    )
    last_seen_read_concurrency: int = Field(
        32, ge=1, le=512, description="CQL reads in flight for one GetPresence of users not in memory."
    )
    max_watches: int = Field(
        10_000, ge=1, le=1_000_000, description="WatchPresence streams per replica before RESOURCE_EXHAUSTED."
    )
    typing_ttl_ms: int = Field(
        5_000, ge=1_000, le=60_000, description="Milliseconds a typing indicator stays visible without a repeat."
    )
    typing_rate_per_s: float = Field(
        5.0, gt=0, le=100, description="SetTyping calls a user may make per second (bursts of as many)."
    )
    history_target: str = Field(
        "127.0.0.1:50052", min_length=1, description="host:port of the history service (membership checks)."
    )
    history_timeout_s: float = Field(2.0, gt=0, le=30, description="Deadline of one GetConversation call to history.")
    membership_cache_s: float = Field(
        30.0, ge=0, le=3_600, description="Seconds a confirmed (user, conversation) membership is reused; 0: never."
    )
    membership_cache_size: int = Field(
        100_000, ge=1, le=10_000_000, description="Most (user, conversation) memberships remembered."
    )

    contacts_cache_s: float = Field(
        10.0,
        ge=0,
        le=3_600,
        description="Seconds an answer of history's FilterContacts (is this user the viewer's contact?) is reused; "
        "a new conversation shows presence after at most this long. 0: never reused.",
    )
    privacy_cache_s: float = Field(
        5.0,
        ge=0,
        le=600,
        description="Seconds a user's privacy setting is reused by a replica; other replicas apply a change "
        "after at most this long. 0: read every time.",
    )
    privacy_cache_size: int = Field(
        100_000, ge=1, le=10_000_000, description="Most (viewer, user) contact answers and privacy settings held."
    )

    @field_validator("offline_retention_s")
    @classmethod
    def _retention_outlives_ttl(cls, value: int, info: ValidationInfo) -> int:
        ttl = info.data.get("device_ttl_s")
        if ttl is not None and value < ttl:
            raise ValueError(f"must be at least device_ttl_s ({ttl})")
        return value
