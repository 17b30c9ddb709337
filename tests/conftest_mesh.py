"""A whole mesh started the way users start it (`python -m mesh up --detach`), shared by a test session.

The browser, SDK and grpcurl-doc tests drive the product from outside, so they share one
real mesh on free ports with its state under a temporary folder; `mesh down` stops it.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: What `grpcurl list` shows of a running mesh (the gateway's catalog), in its order.
MESH_SERVICES = [
    "chatmesh.forms.v1.FormsService",
    "chatmesh.history.v1.HistoryService",
    "chatmesh.inference.v1.InferenceService",
    "chatmesh.ingest.v1.IngestService",
    "chatmesh.presence.v1.PresenceService",
    "chatmesh.session.v1.SessionService",
]


def free_block(size: int, taken: set[int]) -> int:
    """A base port with ``size`` free ports after it, none in ``taken`` (which it extends).

    Drawn below the kernel's ephemeral range (32768 and up): a port picked there can be
    handed to some outgoing connection (a CQL client's, say) before the service binds it.
    """
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(20_000, 32_000 - size)
        block = set(range(base, base + size))
        if not block & taken and all(port_free(p) for p in block):
            taken |= block
            return base
    raise RuntimeError("no block of free ports")


def port_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:port."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def mesh_environment(state_dir: Path) -> dict[str, str]:
    """Environment for a mesh of its own: every port free, state under ``state_dir``."""
    taken: set[int] = set()
    env = {
        "CHATMESH_MESH_STATE_DIR": str(state_dir),
        "CHATMESH_MESH_GATEWAY_PORT": str(free_block(1, taken)),
        "CHATMESH_MESH_GATEWAY_ADMIN_PORT": str(free_block(1, taken)),
        "CHATMESH_MESH_NATS_PORT": str(free_block(1, taken)),
        "CHATMESH_MESH_CQL_PORT": str(free_block(1, taken)),
        "CHATMESH_MESH_CQL_STORAGE_PORT": str(free_block(1, taken)),
        "CHATMESH_MESH_CATALOG_PORT": str(free_block(1, taken)),
        "CHATMESH_MESH_XDS_PORT": str(free_block(1, taken)),
        "CHATMESH_MESH_WEB_PORT": str(free_block(1, taken)),
        "CHATMESH_MESH_SERVICE_BASE_PORT": str(free_block(6, taken)),
        "CHATMESH_MESH_METRICS_BASE_PORT": str(free_block(6, taken)),
        "CHATMESH_MESH_WORKER_METRICS_BASE_PORT": str(free_block(8, taken)),
    }
    # The services import the generated contracts, as under `make` (which exports this).
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "gen" / "python")])
    return {**os.environ, **env}


@dataclass(frozen=True)
class LiveMesh:
    """A running mesh: where its gateway listens and the environment it was started with."""

    env: dict[str, str]
    state_dir: Path

    @property
    def gateway_port(self) -> int:
        """Envoy's port: gRPC, gRPC-web and the browser client."""
        return int(self.env["CHATMESH_MESH_GATEWAY_PORT"])

    @property
    def gateway_url(self) -> str:
        """http://127.0.0.1:<port>, for gRPC-web and the browser."""
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def gateway_target(self) -> str:
        """127.0.0.1:<port>, for gRPC clients and grpcurl."""
        return f"127.0.0.1:{self.gateway_port}"


@pytest.fixture(scope="session")
def live_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveMesh]:
    """`python -m mesh up --detach` on free ports; `python -m mesh down` after the last test using it."""
    state = tmp_path_factory.mktemp("live-mesh") / "state"
    env = mesh_environment(state)
    # The browser's dead-letter scenario makes the sheets consumer fail for one form: it gives
    # up after two tries here (its default, ten over about seven minutes, suits a real sink).
    env["CHATMESH_FORMS_CONSUMERS"] = json.dumps({"sheets": {"max_deliveries": 2}})
    mesh = [sys.executable, "-m", "mesh"]
    try:
        up = subprocess.run(
            [*mesh, "up", "--detach"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=420, check=False
        )
        if up.returncode != 0:
            logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted((state / "logs").glob("*.log")))
            pytest.fail(f"mesh up failed:\n{up.stdout}\n{up.stderr}\n{logs}")
        yield LiveMesh(env=env, state_dir=state)
    finally:
        subprocess.run([*mesh, "down"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False)
