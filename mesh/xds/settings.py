"""Settings of the xDS control plane, from ``CHATMESH_XDS_*`` environment variables.

Nested values take JSON or the ``__`` delimiter (``CHATMESH_XDS_NATS__URL``,
``CHATMESH_XDS_HEALTH_CHECK__INTERVAL_S=2``).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.settings import CLUSTER_NAME_PATTERN, CircuitBreakers, HealthCheck
from mesh.contracts import SERVICES
from services.runtime.bus import NatsSettings


class XdsSettings(BaseSettings):
    """Where the control plane listens, where replicas come from, and how clusters behave."""

    model_config = SettingsConfigDict(
        env_prefix="CHATMESH_XDS_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    host: str = Field(default="127.0.0.1", min_length=1, max_length=253, description="Address the ADS server binds.")
    port: int = Field(default=18000, ge=0, le=65535, description="ADS (and gRPC health) port; 0 picks a free one.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Lowest level logged.")
    source: Literal["registry", "kubernetes"] = Field(
        default="registry",
        description="Where live replicas come from: the REGISTRY KV bucket (local), or the namespace's "
        "EndpointSlices (Kubernetes).",
    )
    nats: NatsSettings = Field(default_factory=NatsSettings, description="NATS of the registry (source=registry).")
    namespace: str = Field(
        default="default",
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="Kubernetes namespace whose EndpointSlices are read (source=kubernetes).",
    )
    kubernetes_port_name: str = Field(
        default="grpc",
        min_length=1,
        max_length=15,
        description="Name of the Service port that is the gRPC port; a slice without it uses its first port.",
    )
    services: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="Services given a cluster each (names as in mesh/contracts.py); empty: every service of "
        "the mesh's contracts.",
    )
    health_check: HealthCheck = Field(
        default_factory=HealthCheck, description="Active gRPC health checks of each cluster (as the gateway's)."
    )
    circuit_breakers: CircuitBreakers = Field(
        default_factory=CircuitBreakers, description="Limits and retry budget of each cluster (as the gateway's)."
    )
    connect_timeout_s: float = Field(
        default=1.0, ge=0.01, le=60.0, description="Seconds Envoy takes to open a TCP connection to a replica."
    )
    lb_policy: Literal["LEAST_REQUEST", "ROUND_ROBIN"] = Field(
        default="LEAST_REQUEST",
        description="How Envoy spreads calls over a service's replicas (LEAST_REQUEST: fewest calls in flight "
        "of two picked at random; long streams count as calls in flight).",
    )
    sweep_interval_s: float = Field(
        default=0.1, gt=0, le=5.0, description="How often replicas past their TTL are looked for (registry)."
    )

    @field_validator("services")
    @classmethod
    def _services_are_cluster_names(cls, value: list[str]) -> list[str]:
        bad = [name for name in value if not re.match(CLUSTER_NAME_PATTERN, name)]
        if bad:
            raise ValueError(f"not a cluster name: {', '.join(bad)}")
        return value

    def cluster_names(self) -> list[str]:
        """The services given a cluster, in order."""
        return list(self.services) if self.services else list(SERVICES)
