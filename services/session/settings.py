"""Settings of the session service (env prefix CHATMESH_SESSION_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.runtime.bus import NatsSettings
from services.runtime.cql import CqlSettings
from services.runtime.settings import ServiceSettings


class SessionSettings(ServiceSettings):
    """Session service settings."""

    model_config = SettingsConfigDict(env_prefix="CHATMESH_SESSION_")

    port: int = Field(50051, ge=0, le=65535, description="gRPC port; 0 picks a free one (tests).")
    cql: CqlSettings = Field(default_factory=CqlSettings, description="CQL cluster (CHATMESH_SESSION_CQL__HOSTS...).")
    nats: NatsSettings = Field(default_factory=NatsSettings, description="NATS (CHATMESH_SESSION_NATS__URL).")
    connect_keepalive_s: float = Field(
        25.0,
        gt=0,
        le=290,
        description="Idle seconds before a Connect stream gets a KeepAlive (the gateway resets at 300).",
    )
    connect_heartbeat_s: float = Field(
        20.0, gt=0, le=600, description="How often an open Connect stream reports its device alive to presence."
    )
    connect_consumer_inactive_s: float = Field(
        60.0, ge=5, le=86_400, description="JetStream removes a gone device's consumer after this long."
    )
    connect_queue_size: int = Field(
        1024, ge=16, le=1_000_000, description="Events buffered per Connect stream before its sources wait."
    )
    signing_key_file: Path = Field(
        Path(".chatmesh/keys/access_token.pem"), description="PEM Ed25519 private key that signs access tokens."
    )
    access_token_ttl_s: int = Field(900, ge=10, le=86_400, description="Lifetime of an access token.")
    refresh_token_ttl_s: int = Field(
        30 * 86_400, ge=3_600, le=90 * 86_400, description="Lifetime of an unused refresh token."
    )
    argon2_time_cost: int = Field(2, ge=1, le=10, description="argon2id iterations (OWASP minimum: 2).")
    argon2_memory_kib: int = Field(19_456, ge=8_192, le=1_048_576, description="argon2id memory (OWASP: 19 MiB).")
    login_free_failures: int = Field(
        5,
        ge=1,
        le=1_000,
        description="Failed logins for one username from one client address before each further attempt waits "
        "(exponential back-off).",
    )
    login_backoff_base_s: float = Field(
        1.0, ge=0.01, le=600, description="First back-off wait; it doubles with each further failure."
    )
    login_backoff_max_s: float = Field(
        900.0, ge=1, le=86_400, description="Longest back-off wait of one (username, client address)."
    )
    login_backoff_reset_s: float = Field(
        3600.0, ge=1, le=86_400, description="Quiet seconds after which a (username, client address) starts afresh."
    )
    login_address_failures: int = Field(
        100,
        ge=1,
        le=1_000_000,
        description="Failed logins one client address may make (all usernames together) within the window.",
    )
    login_address_window_s: float = Field(
        900.0, ge=1, le=86_400, description="Window of the per-address failure budget."
    )
    login_throttle_entries: int = Field(
        100_000, ge=100, le=10_000_000, description="Most (username, address) and address entries remembered."
    )
    max_devices_per_user: int = Field(100, ge=1, le=1_000, description="Devices an account may have logged in.")
    history_target: str = Field(
        "127.0.0.1:50052",
        min_length=1,
        max_length=256,
        description="host:port of the history service: Connect follows presence only of the caller's contacts "
        "(FilterContacts).",
    )
    history_timeout_s: float = Field(2.0, gt=0, le=30, description="Deadline of one FilterContacts call to history.")
