"""Qdrant for the ingest tests: a real server (../shared/bin/qdrant) once per run, or skipped
with the reason when this machine has no binary; a 3-node cluster where a test asks for one."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from chatmesh.ingest.v1 import ingest_pb2_grpc
from mesh.deps.base import free_port
from mesh.deps.nats import Nats
from mesh.deps.process import launch, running, terminate
from mesh.deps.qdrant import Qdrant, QdrantConfig, missing_reason, qdrant_binary
from services.inference.server import build as build_inference
from services.inference.settings import InferenceSettings
from services.ingest.server import IngestApp, assemble
from services.ingest.settings import IngestSettings
from services.ingest.worker import run_worker
from services.runtime.bus import NatsSettings
from services.runtime.server import ServiceServer
from services.runtime.tokens import (
    Principal,
    ServiceTokenSigner,
    TokenSigner,
    generate_key_pair,
    load_private_key,
)
from tests.conftest import KeyPair


def _port_pair() -> int:
    """A free port whose successor is free too (Qdrant's layout: gRPC on REST + 1)."""
    while True:
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def qdrant_node(home: Path, name: str = "qdrant", p2p: bool = False, bootstrap: str = "") -> Qdrant:
    """One Qdrant node on free ports, gRPC on the REST port + 1."""
    http_port = _port_pair()
    return Qdrant(
        QdrantConfig(
            home=home,
            http_port=http_port,
            grpc_port=http_port + 1,
            p2p_port=free_port() if p2p else 0,
            bootstrap=bootstrap,
            name=name,
        )
    )


def require_qdrant() -> None:
    """Skip the calling test when no Qdrant server binary is here (printing why)."""
    if qdrant_binary() is None:
        pytest.skip(missing_reason())


@pytest.fixture(scope="session")
async def qdrant_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Qdrant]:
    """A real single-node Qdrant server for the whole run."""
    require_qdrant()
    async with running(qdrant_node(tmp_path_factory.mktemp("qdrant")), ready_timeout_s=60) as dep:
        assert isinstance(dep, Qdrant)
        yield dep


@dataclass
class ClusterNode:
    """One running node of a test cluster, and its process (so a test can kill it)."""

    dep: Qdrant
    proc: asyncio.subprocess.Process


async def start_cluster(stack: AsyncExitStack, root: Path, size: int = 3) -> list[ClusterNode]:
    """``size`` Qdrant nodes in one cluster (the first bootstraps the others), stopped with ``stack``."""
    require_qdrant()
    nodes: list[ClusterNode] = []
    for number in range(1, size + 1):
        bootstrap = nodes[0].dep.p2p_uri if nodes else ""
        dep = qdrant_node(root / f"node-{number}", f"qdrant-{number}", p2p=True, bootstrap=bootstrap)
        await asyncio.to_thread(dep.prepare)
        spec = dep.spec()
        proc = await launch(spec)
        stack.push_async_callback(terminate, proc, spec.stop_timeout_s)
        await dep.wait_ready(60)
        nodes.append(ClusterNode(dep, proc))
    return nodes


# -- keys, tokens, the ingest service ------------------------------------------------------


@dataclass(frozen=True)
class MeshKeys:
    """The access-token pair (as the session service has it) and the service-token pair."""

    access: KeyPair
    service: KeyPair

    def user_token(self, user_id: str) -> str:
        """An access token for ``user_id`` (as session would sign it at login)."""
        signer = TokenSigner(load_private_key(self.access.private), "chatmesh", 900)
        return signer.sign(Principal(user_id=user_id, device_id=str(uuid.uuid4()), session_id=str(uuid.uuid4()))).token

    def service_token(self, name: str = "test-service") -> str:
        """A service token of ``name``."""
        return ServiceTokenSigner.from_file(self.service.private, "chatmesh", name).token()


@pytest.fixture(scope="session")
def mesh_keys(tmp_path_factory: pytest.TempPathFactory) -> MeshKeys:
    """Both key pairs, once per run (the supervisor writes the same files under .chatmesh/keys)."""
    root = tmp_path_factory.mktemp("keys")
    access = KeyPair(root / "access_token.pem", root / "access_token.pub.pem")
    service = KeyPair(root / "service_token.pem", root / "service_token.pub.pem")
    for pair in (access, service):
        generate_key_pair(pair.private, pair.public)
    return MeshKeys(access, service)


@dataclass(frozen=True)
class User:
    """A user of the tests: their id and the call metadata carrying their token."""

    user_id: str
    metadata: tuple[tuple[str, str], ...]


def new_user(keys: MeshKeys) -> User:
    """A fresh user with a valid access token."""
    user_id = str(uuid.uuid4())
    return User(user_id, (("authorization", f"Bearer {keys.user_token(user_id)}"),))


@pytest.fixture(scope="session")
async def ingest_inference(nats_server: Nats, mesh_keys: MeshKeys) -> AsyncIterator[ServiceServer]:
    """Inference on the bundled model for the ingest tests (accepts service tokens; a roomy queue)."""
    settings = InferenceSettings(
        port=0,
        nats=NatsSettings(url=nats_server.url),
        token_public_key_file=mesh_keys.access.public,
        service_token_public_key_file=mesh_keys.service.public,
        n_ctx=1024,
        n_threads=2,
        slots=1,
        queue_size=64,
        history_target="127.0.0.1:9",
        shutdown_drain_s=0,
        shutdown_grace_s=0.5,
    )
    app = await build_inference(settings)
    async with app:
        yield app


def ingest_settings(nats: Nats, keys: MeshKeys, root: Path, inference_port: int, **overrides: object) -> IngestSettings:
    """Settings for an ingest service (or worker) of a test: its own bus namespace and folders."""
    values: dict[str, object] = {
        "port": 0,
        "nats": NatsSettings(url=nats.url),
        "bus_namespace": uuid.uuid4().hex[:12],
        "token_public_key_file": keys.access.public,
        "service_token_public_key_file": keys.service.public,
        "service_token_private_key_file": keys.service.private,
        "inference_target": f"127.0.0.1:{inference_port}",
        "data_dir": root / "ingest",
        "import_root": root / "import",
        "snapshot_root": root / "snapshots",
        "shutdown_drain_s": 0,
        "shutdown_grace_s": 1,
        "health_interval_s": 0.5,
        **overrides,
    }
    return IngestSettings(**values)  # type: ignore[arg-type]


@dataclass
class IngestHandle:
    """A running ingest service of a test, a channel to it, and its stub."""

    app: IngestApp
    settings: IngestSettings
    channel: grpc.aio.Channel
    stub: ingest_pb2_grpc.IngestServiceStub

    @property
    def target(self) -> str:
        """host:port of its gRPC server."""
        return f"127.0.0.1:{self.app.server.port}"


@asynccontextmanager
async def running_ingest(settings: IngestSettings) -> AsyncIterator[IngestHandle]:
    """An ingest service with ``settings``, started, and a channel to it."""
    app = await assemble(settings)
    async with app.server, grpc.aio.insecure_channel(f"127.0.0.1:{app.server.port}") as channel:
        yield IngestHandle(app, settings, channel, ingest_pb2_grpc.IngestServiceStub(channel))


@pytest.fixture
async def ingest(
    nats_server: Nats, mesh_keys: MeshKeys, ingest_inference: ServiceServer, tmp_path: Path
) -> AsyncIterator[IngestHandle]:
    """The ingest service with the embedded store, in-process."""
    settings = ingest_settings(nats_server, mesh_keys, tmp_path, ingest_inference.port)
    async with running_ingest(settings) as handle:
        yield handle


@asynccontextmanager
async def running_workers(settings: IngestSettings, count: int, **overrides: object) -> AsyncIterator[list[str]]:
    """``count`` workers in this process (the same code as ``python -m services.ingest.worker``)."""
    stop = asyncio.Event()
    names = [f"test-worker-{i + 1}" for i in range(count)]
    values = {
        **settings.model_dump(),
        "ingest_target": overrides.pop("ingest_target", settings.ingest_target),
        **overrides,
    }
    worker_settings = IngestSettings(**values)  # type: ignore[arg-type]
    tasks = [asyncio.create_task(run_worker(worker_settings, name, stop)) for name in names]
    try:
        yield names
    finally:
        stop.set()
        await asyncio.gather(*tasks)
