"""Settings of the local mesh (`make up`): ports, state directory, sizes. Env prefix CHATMESH_MESH_."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Most replicas of one service on one machine.
MAX_REPLICAS = 16


class MeshSettings(BaseSettings):
    """Every port is configurable, so two meshes (or a mesh and the tests) can share a machine."""

    model_config = SettingsConfigDict(env_prefix="CHATMESH_MESH_", extra="ignore", frozen=True)

    state_dir: Path = Field(Path(".chatmesh"), description="Data, logs, keys and pid files of the local mesh.")
    host: str = Field("127.0.0.1", description="Loopback address every component binds.")
    gateway_port: int = Field(8080, ge=1, le=65535, description="Envoy gateway (gRPC, gRPC-web, grpcurl).")
    gateway_admin_port: int = Field(9901, ge=1, le=65535, description="Envoy admin, loopback only.")
    gateway_edge_auth: bool = Field(
        True, description="Envoy verifies tokens before calls reach a service (the services verify them again)."
    )
    nats_port: int = Field(4222, ge=1, le=65535, description="NATS client port.")
    nats_sync_interval: str = Field(
        "1s", pattern=r"^(always|\d+(ms|s|m))$", description="JetStream fsync interval (see mesh/deps/nats.py)."
    )
    nats_nodes: int = Field(
        1,
        ge=1,
        le=5,
        description="nats-server nodes: 1, or a cluster (3) on host, host+1, host+2 (127.0.0.1-3), same ports, "
        "with JetStream streams and KV buckets replicated on every node (R3).",
    )
    nats_cluster_port: int = Field(6222, ge=1, le=65535, description="NATS route port of each cluster node.")
    cassandra_nodes: int = Field(
        1,
        ge=1,
        le=5,
        description="Cassandra nodes: 1, or a cluster (3) on host, host+1, host+2 (127.0.0.1-3), same ports, "
        "keyspace replicated on every node, QUORUM reads and writes.",
    )
    cql_port: int = Field(9042, ge=1, le=65535, description="Cassandra native (CQL) port.")
    cql_storage_port: int = Field(7000, ge=1, le=65535, description="Cassandra inter-node port (loopback).")
    cassandra_heap_mb: int = Field(
        768, ge=256, le=16_384, description="Cassandra JVM heap of each node (512 is enough for a 3-node cluster here)."
    )
    xds_port: int = Field(
        18000, ge=1, le=65535, description="The xDS control plane (python -m mesh.xds): Envoy's service clusters."
    )
    catalog_port: int = Field(50050, ge=1, le=65535, description="Reflection catalog behind the gateway.")
    service_base_port: int = Field(
        50051, ge=1, le=65_000, description="session gets this port, then history, presence, inference, ingest, forms."
    )
    metrics_base_port: int = Field(9101, ge=1, le=65_000, description="Prometheus /metrics ports, same order.")
    worker_metrics_base_port: int = Field(
        9111,
        ge=1,
        le=65_000,
        description="Prometheus /metrics ports of the worker processes, one each, in start order.",
    )
    ingest_workers: int = Field(
        2, ge=0, le=64, description="Ingest worker processes (python -m services.ingest.worker)."
    )
    ingest_max_request_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024 * 1024,
        le=64 * 1024 * 1024,
        description="Largest ingest request, at the gateway and the ingest service (256 points of 1,536 floats "
        "with their payloads: about 1.6 MB).",
    )
    forms_workers: int = Field(1, ge=0, le=64, description="Forms worker processes (python -m services.forms.worker).")
    replicas: str = Field(
        "",
        max_length=512,
        pattern=r"^\s*([a-z]+\s*=\s*\d{1,2}\s*(,\s*[a-z]+\s*=\s*\d{1,2}\s*)*)?$",
        description="Replicas per service, e.g. `history=3,session=2`; unnamed services run one. The first "
        "replica takes the service's base port, the others free ports picked at start (kept across restarts); "
        "each registers in the REGISTRY bucket and the xDS control plane hands it to Envoy.",
    )
    rolling_settle_s: float = Field(
        1.0,
        ge=0,
        le=60,
        description="`restart --rolling`: pause after a restarted replica is routed to again, before the next.",
    )
    web_port: int = Field(
        0, ge=0, le=65535, description="Static server of the browser client; 0 picks a free port at each start."
    )
    web_root: Path = Field(Path("web/dist"), description="The built browser client (relative to the repository).")
    ready_timeout_s: float = Field(300, ge=10, le=3_600, description="How long `up` waits for everything green.")
    restart_backoff_max_s: float = Field(
        30, ge=1, le=600, description="Longest wait before restarting a crashed process."
    )

    @model_validator(mode="after")
    def _cluster_addresses(self) -> MeshSettings:
        if max(self.nats_nodes, self.cassandra_nodes) > 1:
            try:
                loopback = ipaddress.IPv4Address(self.host).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                raise ValueError("host must be an IPv4 loopback address (127.0.0.1) for a cluster on one machine")
        return self

    @model_validator(mode="after")
    def _replica_counts(self) -> MeshSettings:
        for name, count in self.replica_counts.items():
            if not 1 <= count <= MAX_REPLICAS:
                raise ValueError(f"replicas: {name}={count} is out of range (1..{MAX_REPLICAS})")
        return self

    @property
    def replica_counts(self) -> dict[str, int]:
        """``replicas`` parsed: service name -> count (services not named run one)."""
        counts: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in self.replicas.split(","))):
            name, _, count = part.partition("=")
            counts[name.strip()] = int(count)
        return counts

    def replica_count(self, service: str) -> int:
        """How many replicas of ``service`` the mesh runs."""
        return self.replica_counts.get(service, 1)

    def configured_ports(self) -> list[int]:
        """Every port these settings give a process (the first replica of each service's included)."""
        services = 6
        return [
            self.gateway_port,
            self.gateway_admin_port,
            self.nats_port,
            self.nats_cluster_port,
            self.cql_port,
            self.cql_storage_port,
            self.catalog_port,
            self.xds_port,
            *([self.web_port] if self.web_port else []),
            *(self.service_base_port + i for i in range(services)),
            *(self.metrics_base_port + i for i in range(services)),
            *(self.worker_metrics_base_port + i for i in range(self.ingest_workers + self.forms_workers)),
        ]

    def node_host(self, index: int) -> str:
        """The address of cluster node ``index`` (0-based): host, host+1, ... (127.0.0.1, 127.0.0.2...)."""
        return str(ipaddress.IPv4Address(self.host) + index) if index else self.host

    @property
    def run_dir(self) -> Path:
        """Pid and ready files."""
        return self.state_dir / "run"

    @property
    def log_dir(self) -> Path:
        """One log file per process."""
        return self.state_dir / "logs"

    @property
    def key_dir(self) -> Path:
        """The access-token signing key pair."""
        return self.state_dir / "keys"
