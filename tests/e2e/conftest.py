"""Services in-process behind a real Envoy gateway rendered from GatewaySettings."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.envoy import Envoy
from gateway.routes import RouteSpec
from gateway.settings import EdgeAuth, GatewaySettings, Upstream
from mesh import catalog
from mesh.contracts import load
from mesh.deps.base import free_port
from mesh.deps.nats import Nats, NatsConfig
from mesh.deps.process import running
from services.history.server import build as build_history
from services.history.settings import HistorySettings
from services.presence.server import build as build_presence
from services.presence.settings import PresenceSettings
from services.runtime.bus import NatsSettings
from services.runtime.cql import CqlSettings
from services.runtime.server import ServiceServer
from services.session.server import build as build_session
from services.session.settings import SessionSettings
from tests.conftest import KeyPair


@dataclass(frozen=True)
class Gateway:
    """A running gateway: its URL (gRPC-web) and port (gRPC)."""

    url: str
    port: int

    @property
    def target(self) -> str:
        """host:port for a gRPC channel."""
        return f"127.0.0.1:{self.port}"


def contract_routes(name: str) -> RouteSpec:
    """The gateway's RouteSpec of service ``name``, from its contract, as the supervisor builds it."""
    contract = load(name)
    return RouteSpec(
        package=contract.package,
        cluster=name,
        streaming_methods=list(contract.server_streaming),
        client_streaming_methods=list(contract.client_streaming),
        public_methods=list(contract.public),
        optional_auth_methods=list(contract.optional_auth),
        internal_methods=list(contract.internal),
    )


@asynccontextmanager
async def gateway_for(
    services: dict[str, ServiceServer], home: Path, keys: KeyPair | None = None, **changes: Any
) -> AsyncIterator[Gateway]:
    """Envoy routing each named service's package to its in-process server, plus the catalog.

    With ``keys`` the gateway verifies tokens at the edge, as under `make up`; ``changes``
    override other gateway settings.
    """
    catalog_app = await catalog.build(catalog.CatalogSettings(port=0, shutdown_drain_s=0))
    upstreams, routes = [], []
    for name, app in services.items():
        contract = load(name)
        upstreams.append(
            Upstream(name=name, port=app.port, package=contract.package, health_service=contract.full_name)
        )
        routes.append(contract_routes(name))
    values: dict[str, Any] = dict(
        port=free_port(),
        admin_port=free_port(),
        upstreams=upstreams,
        catalog=Upstream(name="catalog", port=catalog_app.port, health_service=""),
        access_log_path=home / "access.log",
    )
    if keys is not None:
        values["edge_auth"] = EdgeAuth(access_token_public_key_file=keys.public)
    settings = GatewaySettings(**{**values, **changes})
    async with catalog_app, running(Envoy(settings, routes, home / "envoy"), ready_timeout_s=60):
        yield Gateway(f"http://127.0.0.1:{settings.port}", settings.port)


@pytest.fixture
async def gateway(session_service: ServiceServer, token_keys: KeyPair, tmp_path: Path) -> AsyncIterator[Gateway]:
    """The gateway in front of the session service, verifying tokens at the edge."""
    async with gateway_for({"session": session_service}, tmp_path, token_keys) as gw:
        yield gw


@pytest.fixture
async def chat_presence(
    history_service: ServiceServer, nats_server: Nats, cql: CqlSettings, token_keys: KeyPair
) -> AsyncIterator[ServiceServer]:
    """Presence wired to the in-process history, with a 2 s device TTL so "offline" comes quickly."""
    app = await build_presence(
        PresenceSettings(
            port=0, nats=NatsSettings(url=nats_server.url), cql=cql, kv_bucket=f"presence_{uuid.uuid4().hex[:12]}",
            token_public_key_file=token_keys.public, history_target=f"127.0.0.1:{history_service.port}",
            device_ttl_s=2, debounce_s=0.2, sweep_interval_s=0.2, shutdown_drain_s=0,
        )
    )  # fmt: skip
    async with app:
        yield app


@pytest.fixture
async def chat_gateway(
    session_service: ServiceServer,
    history_service: ServiceServer,
    chat_presence: ServiceServer,
    token_keys: KeyPair,
    tmp_path: Path,
) -> AsyncIterator[Gateway]:
    """The gateway in front of session, history and presence (one keyspace, one NATS), edge auth on."""
    services = {"session": session_service, "history": history_service, "presence": chat_presence}
    async with gateway_for(services, tmp_path, token_keys) as gw:
        yield gw


@pytest.fixture
async def short_retention_gateway(cql: CqlSettings, token_keys: KeyPair, tmp_path: Path) -> AsyncIterator[Gateway]:
    """Session and history on a NATS of their own whose chat events live 1 second."""
    async with running(Nats(NatsConfig(home=tmp_path / "nats", port=free_port())), ready_timeout_s=30) as dep:
        assert isinstance(dep, Nats)
        nats_settings = NatsSettings(url=dep.url)
        history_port = free_port()
        session = await build_session(
            SessionSettings(
                port=0, cql=cql, nats=nats_settings, signing_key_file=token_keys.private,
                token_public_key_file=token_keys.public, argon2_time_cost=1, argon2_memory_kib=8192,
                shutdown_drain_s=0, history_target=f"127.0.0.1:{history_port}",
            )
        )  # fmt: skip
        history = await build_history(
            HistorySettings(
                port=history_port, cql=cql, nats=nats_settings, token_public_key_file=token_keys.public,
                chat_retention_s=1, shutdown_drain_s=0, session_target=f"127.0.0.1:{session.port}",
            )
        )  # fmt: skip
        gateway = gateway_for({"session": session, "history": history}, tmp_path, token_keys)
        async with history, session, gateway as gw:
            yield gw
