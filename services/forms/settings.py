"""Settings of the forms service (env prefix CHATMESH_FORMS_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.runtime.bus import NatsSettings
from services.runtime.settings import ServiceSettings


class FormsSettings(ServiceSettings):
    """Forms service settings."""

    model_config = SettingsConfigDict(env_prefix="CHATMESH_FORMS_")

    port: int = Field(50056, ge=0, le=65535, description="gRPC port; 0 picks a free one (tests).")
    nats: NatsSettings = Field(default_factory=NatsSettings, description="NATS (CHATMESH_FORMS_NATS__URL).")
