"""Typed settings of the gateway, read from ``CHATMESH_GATEWAY_*`` environment variables.

Nested values take JSON (``CHATMESH_GATEWAY_UPSTREAMS='[{"name": "session", ...}]'``) or the
``__`` delimiter (``CHATMESH_GATEWAY_HEALTH_CHECK__INTERVAL_S=2``).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# A proto package (``chatmesh.session.v1``) or a prefix of several (``grpc.reflection``).
PACKAGE_PATTERN = r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$"
# A full gRPC service name (``chatmesh.session.v1.SessionService``), or "" for the whole server.
SERVICE_PATTERN = r"^([a-z_][a-z0-9_]*\.)*[A-Za-z_][A-Za-z0-9_]*$|^$"
CLUSTER_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"


class Upstream(BaseModel):
    """One gRPC server behind the gateway: an Envoy cluster of one endpoint.

    A host given as an IP address makes a STATIC cluster; a name (``localhost``, a Kubernetes
    service) makes a STRICT_DNS cluster that follows the name's addresses.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=CLUSTER_NAME_PATTERN, description="Envoy cluster name, unique in the gateway.")
    host: str = Field(default="127.0.0.1", min_length=1, max_length=253, description="IP address or DNS name.")
    port: int = Field(ge=1, le=65535, description="TCP port of the server's gRPC (h2c) listener.")
    package: str = Field(
        default="",
        max_length=200,
        pattern=PACKAGE_PATTERN + "|^$",
        description="Proto package routed to this upstream (chatmesh.session.v1); empty routes nothing by default.",
    )
    health_service: str = Field(
        default="",
        max_length=200,
        pattern=SERVICE_PATTERN,
        description="Full service name asked by the gRPC health check; empty asks about the whole server.",
    )


class StaticSite(BaseModel):
    """An HTTP/1.1 server of static files (the browser client) behind the gateway's catch-all route.

    Only GET and HEAD requests that no gRPC route takes reach it, so the page and gRPC-web
    share one origin and need no CORS.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(default="web", pattern=CLUSTER_NAME_PATTERN, description="Envoy cluster name.")
    host: str = Field(default="127.0.0.1", min_length=1, max_length=253, description="IP address or DNS name.")
    port: int = Field(ge=1, le=65535, description="TCP port of the server's HTTP/1.1 listener.")
    health_path: str = Field(
        default="/healthz", pattern=r"^/[A-Za-z0-9_./-]*$", max_length=200, description="Path of the health check."
    )


class RateLimit(BaseModel):
    """A token bucket: each call takes one token; an empty bucket answers RESOURCE_EXHAUSTED."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=True, description="False lets every call through on this route.")
    max_tokens: int = Field(default=5000, ge=1, le=10_000_000, description="Bucket size: the largest burst.")
    tokens_per_fill: int = Field(default=5000, ge=1, le=10_000_000, description="Tokens added each fill.")
    fill_interval_s: float = Field(
        # Envoy refuses fill intervals under 50 ms.
        default=1.0,
        ge=0.05,
        le=86_400.0,
        description="Seconds between fills.",
    )


class HealthCheck(BaseModel):
    """Envoy's active gRPC health check of every upstream (grpc.health.v1.Health/Check)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=True, description="False sends every call to the upstream unchecked.")
    interval_s: float = Field(default=5.0, ge=0.1, le=300.0, description="Seconds between checks.")
    timeout_s: float = Field(default=1.0, ge=0.05, le=60.0, description="Seconds a check may take.")
    healthy_threshold: int = Field(default=1, ge=1, le=100, description="Passes that mark a host healthy.")
    unhealthy_threshold: int = Field(default=3, ge=1, le=100, description="Failures that mark it unhealthy.")
    panic_threshold_percent: float = Field(
        # Envoy's default. With one replica a cluster is 0% or 100% healthy: at 50 a failing check
        # changes nothing (the call goes through and fails or not on its own); at 0 Envoy answers
        # UNAVAILABLE at once while the only replica is marked down, also while it starts.
        default=50.0,
        ge=0.0,
        le=100.0,
        description="Below this share of healthy hosts Envoy ignores health and uses all hosts; 0 never does.",
    )


class CircuitBreakers(BaseModel):
    """Per-upstream limits; past them Envoy answers UNAVAILABLE at once instead of queueing.

    Envoy's defaults (1024 each) suit short calls; long-lived server streams (Connect,
    WatchPresence) hold a request each for minutes, hence the larger ``max_requests``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_connections: int = Field(default=1024, ge=1, le=1_000_000, description="Upstream TCP connections.")
    max_pending_requests: int = Field(
        default=1024, ge=1, le=1_000_000, description="Calls waiting for a connection or stream."
    )
    max_requests: int = Field(default=65_536, ge=1, le=10_000_000, description="Calls in flight, streams included.")
    max_retries: int = Field(
        default=3, ge=0, le=1000, description="Retries in flight, where no retry budget is set (retry_budget_percent)."
    )
    retry_budget_percent: float | None = Field(
        # Envoy's own budget default: retries ride on the traffic, so a failing replica under a
        # load spike cannot double the load on the others.
        default=20.0,
        gt=0.0,
        le=100.0,
        description="Retries in flight as a share of the calls in flight (Envoy's retry budget); None uses the "
        "fixed max_retries instead.",
    )
    retry_min_concurrency: int = Field(
        default=3, ge=1, le=1000, description="Retries in flight always allowed by the budget, however quiet."
    )


class RetryPolicy(BaseModel):
    """Envoy's retries of calls that are safe to repeat (read-only, or idempotent by a client id).

    Only unary methods the contract marks retry-safe (``NO_SIDE_EFFECTS``, or the
    ``(chatmesh.common.v1.retry_safe)`` option) get a retry policy; streams never do. Each
    retry goes to another replica where there is one, and all of them together stay within
    the cluster's retry budget (:class:`CircuitBreakers`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=True, description="False retries nothing at the gateway.")
    num_retries: int = Field(default=2, ge=1, le=10, description="Retries after the first try.")
    retry_on: str = Field(
        default="unavailable,reset,connect-failure,refused-stream",
        pattern=r"^[a-z0-9-]+(,[a-z0-9-]+)*$",
        description="Envoy retry conditions: gRPC status UNAVAILABLE, a reset or refused stream, a failed connect.",
    )
    per_try_timeout_s: float = Field(
        default=10.0,
        ge=0.05,
        le=3600.0,
        description="Longest one try may take before Envoy gives up on it and tries again (the route timeout "
        "still bounds the whole call).",
    )
    base_interval_s: float = Field(
        default=0.025, ge=0.001, le=10.0, description="First back-off between tries (jittered, doubling)."
    )


class XdsSource(BaseModel):
    """The mesh's xDS control plane (``python -m mesh.xds``): Envoy's service clusters and endpoints.

    With one, the service clusters come from it over ADS (CDS, then EDS per cluster) instead
    of being rendered as static clusters; listeners, routes and filters stay rendered here.
    Envoy keeps the last configuration it got while the control plane is away, and
    reconnects to it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(default="127.0.0.1", min_length=1, max_length=253, description="IP address or DNS name.")
    port: int = Field(default=18000, ge=1, le=65535, description="Port of its gRPC (h2c) ADS server.")
    cluster_name: str = Field(
        default="xds_cluster", pattern=CLUSTER_NAME_PATTERN, description="Name of the static cluster that reaches it."
    )
    reconnect_base_s: float = Field(
        default=0.25, ge=0.01, le=60.0, description="First wait before Envoy reconnects to a lost control plane."
    )
    reconnect_max_s: float = Field(
        default=2.0,
        ge=0.01,
        le=300.0,
        description="Longest wait between reconnection attempts (jittered back-off up to it): how late Envoy "
        "may notice that the control plane is back.",
    )
    initial_fetch_timeout_s: float = Field(
        default=15.0,
        ge=0.0,
        le=300.0,
        description="How long Envoy waits at start for the clusters before opening its listener anyway (0: forever).",
    )


class EdgeAuth(BaseModel):
    """JWT verification at the edge (Envoy's jwt_authn) with the session service's public keys.

    Calls that need a token and carry none, or an invalid or expired one, are answered
    UNAUTHENTICATED by Envoy and never reach a service. Services verify every token again
    (revocation, ``typ``, the user a service acts for): the edge only keeps what cannot pass
    from costing them anything. The keys are read from their PEM files when Envoy's
    configuration is rendered (a local JWKS), so a key rotation is a re-render.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=True, description="False forwards every call unverified (services still verify).")
    access_token_public_key_file: Path = Field(description="PEM Ed25519 public key of users' access tokens.")
    service_token_public_key_file: Path | None = Field(
        default=None, description="PEM Ed25519 public key of the mesh's service tokens; None accepts none at the edge."
    )
    issuer: str = Field(default="chatmesh", min_length=1, max_length=64, description="Expected `iss` of tokens.")
    clock_skew_s: int = Field(default=5, ge=0, le=300, description="Leeway on `exp` and `nbf`, as the services allow.")
    cache_size: int = Field(
        default=10_000,
        ge=0,
        le=1_000_000,
        description="Verified tokens each Envoy worker remembers until they expire (0: verify every call).",
    )


class ClientBucket(BaseModel):
    """A token bucket per client: ``burst`` calls at once, then ``per_second`` on average."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    burst: int = Field(ge=1, le=10_000_000, description="Bucket size: the largest burst of one client.")
    per_second: int = Field(ge=1, le=10_000_000, description="Calls per second a client may keep up.")


class ClientRateLimits(BaseModel):
    """Rate limits per client at the edge: one bucket per user, one per address for anonymous calls.

    A user (the verified token's subject) gets ``user``, shared by all the user's calls
    through this gateway; a call without a token (public RPCs such as Login, optional-auth
    RPCs called anonymously, health, reflection, the web page) takes from its client
    address's ``address`` bucket. One client emptying its bucket changes nothing for any
    other: a refused call reads RESOURCE_EXHAUSTED with a ``retry-after-ms`` header.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=True, description="False limits no client (route buckets still apply).")
    user: ClientBucket = Field(
        # A chat client's busiest moment (open the app: sync chats, pages, presence) is tens of
        # calls; a bulk SDK client upserting batches stays well under 200/s.
        default_factory=lambda: ClientBucket(burst=1000, per_second=200),
        description="Bucket of each user (token subject), across every route.",
    )
    address: ClientBucket = Field(
        # Anonymous traffic is login, registration, refresh, page loads and anonymous forms:
        # a NAT of a few dozen people fits; a password sprayer from one address does not.
        default_factory=lambda: ClientBucket(burst=100, per_second=20),
        description="Bucket of each client address for calls without a token.",
    )
    max_tracked_clients: int = Field(
        default=100_000,
        ge=1,
        le=10_000_000,
        description="Clients whose buckets Envoy keeps (least recently seen forgotten first).",
    )


def _default_upstreams() -> list[Upstream]:
    services = [
        ("session", 50051, "SessionService"),
        ("history", 50052, "HistoryService"),
        ("presence", 50053, "PresenceService"),
        ("inference", 50054, "InferenceService"),
        ("ingest", 50055, "IngestService"),
        ("forms", 50056, "FormsService"),
    ]
    return [
        Upstream(
            name=name,
            port=port,
            package=f"chatmesh.{name}.v1",
            health_service=f"chatmesh.{name}.v1.{service}",
        )
        for name, port, service in services
    ]


DEFAULT_CORS_ORIGINS = [
    "http://127.0.0.1:8080",
    "http://localhost:8080",
    "http://127.0.0.1:5173",
    "http://localhost:5173",
]


class GatewaySettings(BaseSettings):
    """Everything the rendered Envoy configuration depends on."""

    model_config = SettingsConfigDict(env_prefix="CHATMESH_GATEWAY_", env_nested_delimiter="__", frozen=True)

    host: str = Field(
        default="127.0.0.1", min_length=1, max_length=45, description="Listener IP address (Envoy resolves no names)."
    )
    port: int = Field(default=8080, ge=1, le=65535, description="Listener port (gRPC-web and h2c gRPC).")
    admin_port: int = Field(
        default=9901, ge=1, le=65535, description="Envoy admin port; always bound to 127.0.0.1 only."
    )
    upstreams: list[Upstream] = Field(
        default_factory=_default_upstreams, max_length=64, description="The gRPC services behind the gateway."
    )
    catalog: Upstream = Field(
        default_factory=lambda: Upstream(name="catalog", port=50050),
        description="Server that answers reflection (lists every service) and grpc.health.v1.Health.",
    )
    web: StaticSite | None = Field(
        default=None, description="Static file server behind the catch-all route `/`; None serves no page."
    )
    cors_allowed_origins: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CORS_ORIGINS),
        max_length=64,
        description="Exact browser origins (scheme://host:port) allowed to call the gateway.",
    )
    cors_max_age_s: int = Field(
        default=7200, ge=0, le=86_400, description="Seconds a browser may cache a preflight answer."
    )
    unary_timeout_s: float = Field(
        default=30.0, ge=0.1, le=3600.0, description="Longest unary call; a shorter client deadline wins."
    )
    stream_idle_timeout_s: float = Field(
        default=300.0,
        ge=1.0,
        le=86_400.0,
        description="A stream with no bytes either way for this long is reset (streams have no total timeout).",
    )
    max_request_bytes: int = Field(
        default=1 << 20,
        ge=1024,
        le=1 << 30,
        description="Largest request body on unary and server-streaming routes; client streams are exempt.",
    )
    max_request_bytes_overrides: dict[str, int] = Field(
        default_factory=dict,
        max_length=256,
        description="Largest request body by package (chatmesh.ingest.v1) or full method path, where it differs "
        "from max_request_bytes (1 KiB to 1 GiB each).",
    )
    rate_limit: RateLimit = Field(default_factory=RateLimit, description="Token bucket of every route.")
    rate_limit_overrides: dict[str, RateLimit] = Field(
        default_factory=dict,
        max_length=256,
        description="Buckets by package (chatmesh.session.v1) or full method path (/pkg.Service/Method).",
    )
    health_check: HealthCheck = Field(default_factory=HealthCheck, description="Active upstream health checks.")
    circuit_breakers: CircuitBreakers = Field(
        default_factory=CircuitBreakers, description="Limits applied to every upstream cluster."
    )
    connect_timeout_s: float = Field(
        default=1.0, ge=0.01, le=60.0, description="Seconds to open a TCP connection to an upstream."
    )
    max_concurrent_streams: int = Field(
        # gRPC's own servers default to 100; a client multiplexing its streams (Connect,
        # WatchPresence, Reply) and its unary calls on one connection needs more.
        default=256,
        ge=1,
        le=2_147_483_647,
        description="HTTP/2 streams one downstream connection may open.",
    )
    max_downstream_connections: int = Field(
        default=10_000, ge=1, le=10_000_000, description="Connections the listener accepts in all."
    )
    edge_auth: EdgeAuth | None = Field(
        default=None, description="JWT verification at the edge; None verifies nothing at the gateway."
    )
    client_rate_limits: ClientRateLimits = Field(
        default_factory=ClientRateLimits, description="Token buckets per user and per client address."
    )
    request_headers_timeout_s: float = Field(
        default=5.0,
        ge=0.5,
        le=300.0,
        description="A new call's headers must arrive within this; a connection that dribbles them is closed.",
    )
    request_timeout_s: float = Field(
        default=10.0,
        ge=1.0,
        le=3600.0,
        description="A call's request (headers and, for unary and server-streaming calls, its one message) must "
        "arrive within this unless the service has begun answering; else DEADLINE_EXCEEDED. Client streams must "
        "have their service answer headers at once.",
    )
    max_heap_bytes: int = Field(
        default=1 << 30,
        ge=64 << 20,
        le=1 << 40,
        description="Envoy's heap ceiling: past 95% of it new calls get UNAVAILABLE until memory is freed.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="CIDRs of proxies in front of the gateway whose x-forwarded-for names the client; from "
        "anyone else the connection's own address is the client's (per-address limits, client address header).",
    )
    access_log_path: Path | None = Field(
        default=None, description="File of JSON access log lines; None writes them to Envoy's stdout."
    )
    access_log_enabled: bool = Field(default=True, description="False writes no access log at all.")
    server_name: str = Field(
        default="chatmesh-gateway", min_length=1, max_length=64, description="Value of the server response header."
    )
    xds: XdsSource | None = Field(
        default=None,
        description="The xDS control plane serving the service clusters (CDS/EDS); None renders them static from "
        "`upstreams`.",
    )
    retries: RetryPolicy = Field(
        default_factory=RetryPolicy, description="Retries of retry-safe unary methods (RouteSpec.retry_safe_methods)."
    )
    node_id: str = Field(
        default="chatmesh-gateway",
        min_length=1,
        max_length=128,
        description="Envoy's node id, as the xDS control plane sees it (one per gateway instance is clearest).",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, value: list[str]) -> list[str]:
        return [str(ipaddress.ip_network(v, strict=False)) for v in value]  # its ValueError names the bad one

    @field_validator("host")
    @classmethod
    def _host_is_an_ip_address(cls, value: str) -> str:
        ipaddress.ip_address(value)  # its ValueError names the bad address
        return value

    @model_validator(mode="after")
    def _names_and_ports_are_distinct(self) -> Self:
        names = [u.name for u in self.upstreams] + [self.catalog.name] + ([self.web.name] if self.web else [])
        names += [self.xds.cluster_name] if self.xds else []
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"upstream names must be unique (catalog included): {', '.join(duplicates)}")
        packages = [u.package for u in self.upstreams if u.package]
        duplicates = sorted({p for p in packages if packages.count(p) > 1})
        if duplicates:
            raise ValueError(f"a package may be served by one upstream only: {', '.join(duplicates)}")
        bad_sizes = sorted(k for k, v in self.max_request_bytes_overrides.items() if not 1024 <= v <= 1 << 30)
        if bad_sizes:
            raise ValueError(f"max_request_bytes_overrides must be 1 KiB to 1 GiB: {', '.join(bad_sizes)}")
        if self.port == self.admin_port:
            raise ValueError(f"port and admin_port must differ (both {self.port})")
        bad = [o for o in self.cors_allowed_origins if not o.startswith(("http://", "https://")) or o.endswith("/")]
        if bad:
            raise ValueError(f"cors_allowed_origins must be scheme://host[:port] without a slash: {', '.join(bad)}")
        return self
