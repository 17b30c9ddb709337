"""Qdrant for the ingest tests: a real server (../shared/bin/qdrant) once per run, or skipped
with the reason when this machine has no binary; a 3-node cluster where a test asks for one."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from mesh.deps.base import free_port
from mesh.deps.process import launch, running, terminate
from mesh.deps.qdrant import Qdrant, QdrantConfig, missing_reason, qdrant_binary


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
