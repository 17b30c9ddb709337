"""Settings of the history service (env prefix CHATMESH_HISTORY_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.runtime.bus import NatsSettings
from services.runtime.cql import CqlSettings
from services.runtime.settings import ServiceSettings


class HistorySettings(ServiceSettings):
    """History service settings."""

    model_config = SettingsConfigDict(env_prefix="CHATMESH_HISTORY_")

    port: int = Field(50052, ge=0, le=65535, description="gRPC port; 0 picks a free one (tests).")
    nats: NatsSettings = Field(default_factory=NatsSettings, description="NATS (CHATMESH_HISTORY_NATS__URL).")
    cql: CqlSettings = Field(default_factory=CqlSettings, description="CQL cluster (CHATMESH_HISTORY_CQL__HOSTS...).")
    chat_retention_s: int = Field(
        7 * 86_400,
        ge=1,
        le=365 * 86_400,
        description="How long events stay replayable on chat.user.<id>; older gaps get ResyncRequired.",
    )
    chat_max_consumers: int = Field(
        100_000,
        ge=1_000,
        le=10_000_000,
        description="Consumers the CHAT stream allows: one per connected device (session) and a few more.",
    )
    sends_per_second: float = Field(20.0, gt=0, le=10_000, description="Sustained messages a user may send per second.")
    send_burst: int = Field(
        60, ge=1, le=100_000, description="Messages a user may send at once before the rate applies."
    )
    conversation_cache_size: int = Field(
        100_000, ge=100, le=10_000_000, description="Conversations whose members and last sequence stay in memory."
    )
    session_target: str = Field(
        "127.0.0.1:50051",
        min_length=1,
        max_length=256,
        description="host:port of the session service: CreateConversation asks its LookupUsers whether the peer "
        "is an account.",
    )
    session_timeout_s: float = Field(2.0, gt=0, le=30, description="Deadline of one LookupUsers call to session.")
    known_users_cache_size: int = Field(
        100_000,
        ge=1,
        le=10_000_000,
        description="User ids found to be accounts, remembered (accounts are never deleted).",
    )
