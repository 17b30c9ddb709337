"""The history service in-process on real NATS and Cassandra (shared by services/ and e2e/ tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mesh.deps.nats import Nats
from services.history.server import build
from services.history.settings import HistorySettings
from services.runtime.bus import NatsSettings
from services.runtime.cql import CqlSettings
from services.runtime.server import ServiceServer
from tests.conftest import KeyPair


@pytest.fixture
async def history_service(
    cql: CqlSettings,
    nats_server: Nats,
    token_keys: KeyPair,
    service_keys: KeyPair,
    session_service: ServiceServer,
    history_port: int,
) -> AsyncIterator[ServiceServer]:
    """History with a generous send rate (tests send fast on purpose), asking the test's session about
    peers; takes service tokens of ``service_keys``."""
    settings = HistorySettings(
        port=history_port,
        session_target=f"127.0.0.1:{session_service.port}",
        cql=cql,
        nats=NatsSettings(url=nats_server.url),
        token_public_key_file=token_keys.public,
        service_token_public_key_file=service_keys.public,
        sends_per_second=10_000,
        send_burst=10_000,
        shutdown_drain_s=0,
    )
    app = await build(settings)
    async with app:
        yield app
