"""A real Qdrant server (or one node of a cluster) for tests, benchmarks and production-like runs.

No package registry here serves a Qdrant server, so the binary comes from the environment:
``CHATMESH_QDRANT_BIN``, else ``<repo>/../shared/bin/qdrant`` (Qdrant 1.18.1 built from its
source, see shared/qdrant/README.md), else ``qdrant`` on PATH. :func:`qdrant_binary` returns
None when none is found, and the server tests skip with that reason.

Qdrant is configured with environment variables (``QDRANT__SERVICE__GRPC_PORT``...), run from
its instance directory (it logs "Config file not found": harmless) and stops cleanly on
SIGTERM. A cluster node sets ``QDRANT__CLUSTER__ENABLED=true`` and its p2p port; the first node
names its own ``--uri``, the others ``--bootstrap`` from the first.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mesh.deps.base import ProcessSpec

_REPO = Path(__file__).resolve().parents[2]
BINARY_ENV = "CHATMESH_QDRANT_BIN"


def qdrant_binary() -> Path | None:
    """The Qdrant server binary to run, or None when there is none on this machine."""
    configured = os.environ.get(BINARY_ENV)
    if configured:
        path = Path(configured)
        return path if path.is_file() and os.access(path, os.X_OK) else None
    # A worktree sits next to /work/shared, a clone's CI next to its own copy of shared/.
    for candidate in (_REPO.parent / "shared" / "bin" / "qdrant", _REPO / "shared" / "bin" / "qdrant"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("qdrant")
    return Path(found) if found else None


def missing_reason() -> str:
    """Why no Qdrant server can run here (for skip messages)."""
    return (
        f"no Qdrant server binary: set {BINARY_ENV}, or put it at ../shared/bin/qdrant "
        "(see shared/qdrant/README.md), or on PATH"
    )


@dataclass(frozen=True)
class QdrantConfig:
    """One Qdrant node.

    Attributes:
        home: instance directory (storage/, snapshots/, the log).
        host: address it listens on.
        http_port: REST port.
        grpc_port: gRPC port (what chatmesh's server store talks to).
        p2p_port: cluster port; 0 runs a single node without cluster mode.
        bootstrap: p2p URI of a node already in the cluster; empty for the first node.
        name: process name in logs (``qdrant``, ``qdrant-2``).
    """

    home: Path
    host: str = "127.0.0.1"
    http_port: int = 6333
    grpc_port: int = 6334
    p2p_port: int = 0
    bootstrap: str = ""
    name: str = "qdrant"


class Qdrant:
    """The Qdrant dependency (a :class:`mesh.deps.base.Dependency`)."""

    def __init__(self, config: QdrantConfig) -> None:
        self.config = config
        self.name = config.name

    @property
    def url(self) -> str:
        """REST base URL."""
        return f"http://{self.config.host}:{self.config.http_port}"

    @property
    def grpc_target(self) -> str:
        """host:port of the gRPC API."""
        return f"{self.config.host}:{self.config.grpc_port}"

    @property
    def p2p_uri(self) -> str:
        """This node's cluster URI (empty without cluster mode)."""
        return f"http://{self.config.host}:{self.config.p2p_port}" if self.config.p2p_port else ""

    def prepare(self) -> None:
        """Create the instance directories."""
        for sub in ("storage", "snapshots"):
            (self.config.home / sub).mkdir(parents=True, exist_ok=True)

    def spec(self) -> ProcessSpec:
        """The server in the foreground, configured through its environment."""
        binary = qdrant_binary()
        if binary is None:
            raise RuntimeError(missing_reason())
        c = self.config
        env = {
            "QDRANT__SERVICE__HOST": c.host,
            "QDRANT__SERVICE__HTTP_PORT": str(c.http_port),
            "QDRANT__SERVICE__GRPC_PORT": str(c.grpc_port),
            "QDRANT__STORAGE__STORAGE_PATH": str(c.home / "storage"),
            "QDRANT__STORAGE__SNAPSHOTS_PATH": str(c.home / "snapshots"),
            "QDRANT__TELEMETRY_DISABLED": "true",
            "QDRANT__LOG_LEVEL": "WARN",
        }
        argv = [str(binary), "--disable-telemetry"]
        if c.p2p_port:
            env["QDRANT__CLUSTER__ENABLED"] = "true"
            env["QDRANT__CLUSTER__P2P__PORT"] = str(c.p2p_port)
            # Loopback peers answer in milliseconds; the defaults suit real networks.
            env["QDRANT__CLUSTER__CONSENSUS__TICK_PERIOD_MS"] = "50"
            argv += ["--bootstrap", c.bootstrap] if c.bootstrap else ["--uri", self.p2p_uri]
        return ProcessSpec(
            name=c.name, argv=argv, env=env, cwd=c.home, log_path=c.home / "qdrant.log", stop_timeout_s=10.0
        )

    async def wait_ready(self, timeout_s: float) -> None:
        """Return once the REST API says the node is ready (and, in a cluster, has a leader)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            try:
                await asyncio.to_thread(_get, f"{self.url}/readyz")
                if not self.config.p2p_port or await asyncio.to_thread(self._cluster_has_leader):
                    return
            except OSError:
                pass
            if loop.time() > deadline:
                raise TimeoutError(f"Qdrant at {self.url} not ready in {timeout_s}s; see {self.config.home}")
            await asyncio.sleep(0.1)

    def _cluster_has_leader(self) -> bool:
        status = json.loads(_get(f"{self.url}/cluster"))["result"]
        return bool(status.get("raft_info", {}).get("leader"))


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback URL we built
        return str(response.read().decode())
