"""The session service and the catalog behind a real Envoy gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.envoy import Envoy
from gateway.routes import RouteSpec
from gateway.settings import GatewaySettings, Upstream
from mesh import catalog
from mesh.contracts import load
from mesh.deps.base import free_port
from mesh.deps.process import running
from services.runtime.server import ServiceServer


@dataclass(frozen=True)
class Gateway:
    """A running gateway in front of the session service."""

    url: str
    port: int
    session: ServiceServer


@pytest.fixture
async def gateway(session_service: ServiceServer, tmp_path: Path) -> AsyncIterator[Gateway]:
    """Envoy rendered from GatewaySettings, routing the session package and reflection."""
    catalog_app = await catalog.build(catalog.CatalogSettings(port=0, shutdown_drain_s=0))
    await catalog_app.start()
    contract = load("session")
    settings = GatewaySettings(
        port=free_port(),
        admin_port=free_port(),
        upstreams=[
            Upstream(
                name="session", port=session_service.port, package=contract.package, health_service=contract.full_name
            )
        ],
        catalog=Upstream(name="catalog", port=catalog_app.port, health_service=""),
        access_log_path=tmp_path / "access.log",
        # grpc-python waits forever on a truncated frame; the gateway's unary timeout ends
        # such calls (30 s in production, 3 s here so the malformed-body test stays quick).
        unary_timeout_s=3,
    )
    routes = [RouteSpec(package=contract.package, cluster="session", streaming_methods=list(contract.server_streaming))]
    try:
        async with running(Envoy(settings, routes, tmp_path / "envoy"), ready_timeout_s=60):
            yield Gateway(f"http://127.0.0.1:{settings.port}", settings.port, session_service)
    finally:
        await catalog_app.stop()
