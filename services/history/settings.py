"""Settings of the history service (env prefix CHATMESH_HISTORY_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.runtime.bus import NatsSettings
from services.runtime.settings import ServiceSettings


class HistorySettings(ServiceSettings):
    """History service settings."""

    model_config = SettingsConfigDict(env_prefix="CHATMESH_HISTORY_")

    port: int = Field(50052, ge=0, le=65535, description="gRPC port; 0 picks a free one (tests).")
    nats: NatsSettings = Field(default_factory=NatsSettings, description="NATS (CHATMESH_HISTORY_NATS__URL).")
