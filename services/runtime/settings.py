"""Settings every service shares; each service subclasses with its own env prefix.

Loaded once at start (:func:`load_settings`), validated, and passed in. A missing or
invalid setting stops the start with one line naming it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, Self, TypeVar

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024


class ServiceSettings(BaseSettings):
    """What the runtime needs to serve one service. Env prefix: CHATMESH_<SERVICE>_."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, env_nested_delimiter="__")

    host: str = Field("127.0.0.1", description="Address the gRPC server binds.")
    port: int = Field(0, ge=0, le=65535, description="gRPC port; 0 picks a free one (tests).")
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Prometheus /metrics port on the same host; 0 disables the endpoint."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Lowest level logged.")
    token_public_key_file: Path | None = Field(
        None, description="PEM Ed25519 public key that verifies access tokens (written by the session service)."
    )
    service_token_public_key_file: Path | None = Field(
        None,
        description="PEM Ed25519 public key that verifies service tokens (mesh processes acting for a user); "
        "unset: service tokens are refused.",
    )
    token_issuer: str = Field("chatmesh", min_length=1, max_length=64, description="Expected `iss` of tokens.")
    max_receive_message_bytes: int = Field(
        1 * MiB, ge=4096, le=64 * MiB, description="Largest request message accepted; larger is RESOURCE_EXHAUSTED."
    )
    max_send_message_bytes: int = Field(4 * MiB, ge=4096, le=64 * MiB, description="Largest response message sent.")
    default_deadline_s: float = Field(
        30.0, gt=0, le=600, description="Deadline for unary calls whose client set none (streams have none)."
    )
    max_concurrent_rpcs: int = Field(
        20_000,
        ge=1,
        le=100_000,
        description="Calls in flight in the whole process before new ones get RESOURCE_EXHAUSTED: a memory "
        "guard far above the per-caller shares below, which are what sheds an abusive caller.",
    )
    max_calls_per_caller: int = Field(
        256,
        ge=1,
        le=100_000,
        description="Unary calls in flight per caller (a user, or a client address without a token); "
        "more are RESOURCE_EXHAUSTED with retry-after-ms, for that caller only.",
    )
    max_streams_per_caller: int = Field(
        64, ge=1, le=100_000, description="Open server streams (Connect, WatchPresence...) per caller."
    )
    first_message_timeout_s: float = Field(
        5.0,
        gt=0,
        le=120,
        description="A call whose request message has not arrived this long after its headers ends "
        "DEADLINE_EXCEEDED (a client that sends headers and nothing holds no slot for long).",
    )
    max_concurrent_streams: int = Field(1000, ge=1, le=100_000, description="HTTP/2 streams per connection.")
    max_pending_calls: int = Field(
        10_000,
        ge=100,
        le=100_000,
        description="Calls that have arrived but the server has not taken up yet (a burst faster than it "
        "accepts them) wait in grpc core's queue, up to this many; past it core drops new calls at random "
        "as CANCELLED before any layer sees them, and refuses all at twice this. (Core's default, 1,000, "
        "dropped other users' calls under one client's burst of thousands: the per-caller shares above "
        "can only refuse the flooding caller once its calls are taken up.)",
    )
    gc_young_threshold: int = Field(
        700,
        ge=100,
        le=1_000_000,
        description="Net container allocations between two young garbage collections (the interpreter's "
        "default: a gRPC service's per-call garbage is best collected small and often; see "
        "services/runtime/collector.py).",
    )
    keepalive_time_s: int = Field(30, ge=1, le=3600, description="Server-sent HTTP/2 pings on idle connections.")
    shutdown_drain_s: float = Field(
        # Envoy learns of the drain from the registry within ~0.1 s (KV watch, then an EDS push
        # within the control plane's 1 s) and sends the replica no new call after that; calls
        # already on their way still arrive. 2 s covers both with room; calls in flight then
        # get shutdown_grace_s more.
        2.0,
        ge=0,
        le=60,
        description="Seconds the replica says DRAINING (registry) and NOT_SERVING (health) before the server "
        "stops taking calls: long enough for Envoy to stop routing new calls to it.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        max_length=64,
        description="Peers (CIDRs) whose x-chatmesh-client-address header names the client (the gateway).",
    )
    reflection: bool = Field(
        True,
        description="Serve gRPC reflection (grpcurl list/describe). On by default locally; turn off where the "
        "service port is reachable by anyone but operators.",
    )
    shutdown_grace_s: float = Field(5.0, ge=0, le=300, description="Seconds calls in flight get to finish on stop.")
    registry_enabled: bool = Field(
        True,
        description="Register this replica in the mesh's registry (the REGISTRY KV bucket the xDS control plane "
        "follows) when the settings name a NATS; False keeps it out of discovery.",
    )
    replica: str = Field(
        "",
        max_length=100,
        pattern=r"^$|^[A-Za-z0-9_=-][A-Za-z0-9_=/-]*$",
        description="This replica's name, unique within its service (history-2); empty: the service's name.",
    )
    zone: str = Field(
        "local", min_length=1, max_length=63, description="Locality zone of this replica, for zone-aware balancing."
    )
    advertise_host: str = Field(
        "",
        max_length=253,
        description="Address other processes (Envoy) reach this replica at; empty: `host` (set it when host is "
        "0.0.0.0).",
    )
    registry_ttl_s: float = Field(
        3.0,
        gt=0.2,
        le=300,
        description="Seconds without a heartbeat after which readers drop this replica (a SIGKILLed one leaves "
        "discovery within this).",
    )
    registry_heartbeat_s: float = Field(
        1.0, gt=0.05, le=100, description="Seconds between registry heartbeats; well under registry_ttl_s."
    )

    @model_validator(mode="after")
    def _heartbeat_within_ttl(self) -> Self:
        if self.registry_heartbeat_s * 2 > self.registry_ttl_s:
            raise ValueError(
                f"registry_heartbeat_s ({self.registry_heartbeat_s}) must be at most half of registry_ttl_s "
                f"({self.registry_ttl_s}): one lost heartbeat must not drop a live replica"
            )
        return self


S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S]) -> S:
    """Load ``cls`` from the environment; on error print one line naming the setting and exit 2."""
    try:
        return cls()
    except ValidationError as exc:
        prefix = str(cls.model_config.get("env_prefix", ""))
        problems = "; ".join(
            f"{prefix}{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        print(f"chatmesh: invalid settings: {problems}", file=sys.stderr)
        raise SystemExit(2) from None
