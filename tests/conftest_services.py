"""In-process services on port 0, on the real NATS and Cassandra of the run."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest

from mesh.deps.nats import Nats
from services.presence.server import build as build_presence
from services.presence.settings import PresenceSettings
from services.runtime.bus import NatsSettings
from services.runtime.cql import CqlSettings
from services.runtime.server import ServiceServer
from services.session.server import build as build_session
from services.session.settings import SessionSettings
from tests.conftest import KeyPair


@pytest.fixture
async def session_service(cql: CqlSettings, nats_server: Nats, token_keys: KeyPair) -> AsyncIterator[ServiceServer]:
    """The session service on a fresh keyspace (cheap argon2 parameters: tests are not attacks)."""
    settings = SessionSettings(
        port=0,
        metrics_port=0,
        cql=cql,
        nats=NatsSettings(url=nats_server.url),
        signing_key_file=token_keys.private,
        token_public_key_file=token_keys.public,
        argon2_time_cost=1,
        argon2_memory_kib=8192,
        login_failures_allowed=3,
        shutdown_drain_s=0,
    )
    app = await build_session(settings)
    async with app:
        yield app


@pytest.fixture
async def session_channel(session_service: ServiceServer) -> AsyncIterator[grpc.aio.Channel]:
    """A client channel to the session service."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{session_service.port}") as channel:
        yield channel


@pytest.fixture
async def presence_service(nats_server: Nats, cql: CqlSettings, token_keys: KeyPair) -> AsyncIterator[ServiceServer]:
    """The presence service on a fresh keyspace (its own KV bucket, so tests don't see each other's devices)."""
    settings = PresenceSettings(
        port=0,
        nats=NatsSettings(url=nats_server.url),
        cql=cql,
        kv_bucket=f"presence_{uuid.uuid4().hex[:12]}",
        token_public_key_file=token_keys.public,
        shutdown_drain_s=0,
    )
    app = await build_presence(settings)
    async with app:
        yield app
