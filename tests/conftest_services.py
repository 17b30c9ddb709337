"""In-process services on port 0, on the real NATS and Cassandra of the run."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest

from mesh.deps.base import free_port
from mesh.deps.nats import Nats
from services.presence.server import build as build_presence
from services.presence.settings import PresenceSettings
from services.runtime.bus import NatsSettings
from services.runtime.cql import CqlSession, CqlSettings
from services.runtime.server import ServiceServer
from services.session.server import build as build_session
from services.session.settings import SessionSettings
from services.session.store import Account, AccountStore
from tests.conftest import KeyPair


@pytest.fixture
def history_port() -> int:
    """The port the test's history service takes (session's Connect asks it who are contacts)."""
    return free_port()


@pytest.fixture(scope="session")
def session_keyspace() -> str:
    """One keyspace for the session services of the whole run.

    Every test's users are new (random names and ids), so they can share accounts tables; the
    tables are made once instead of per test (DDL is the slowest thing Cassandra does, and
    thousands of tables weigh on a test node's heap).
    """
    return f"t_session_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def session_cql(cql: CqlSettings, session_keyspace: str) -> CqlSettings:
    """CQL settings of the test's session service (the run's shared session keyspace)."""
    return cql.model_copy(update={"keyspace": session_keyspace})


@pytest.fixture
def session_overrides() -> dict[str, Any]:
    """Settings of the session fixture a test module overrides (by redefining this fixture)."""
    return {}


@pytest.fixture
async def session_service(
    session_cql: CqlSettings,
    nats_server: Nats,
    token_keys: KeyPair,
    history_port: int,
    session_overrides: dict[str, Any],
) -> AsyncIterator[ServiceServer]:
    """The session service on the run's session keyspace (cheap argon2 parameters: tests are not attacks)."""
    values: dict[str, Any] = {
        "port": 0,
        "metrics_port": 0,
        "cql": session_cql,
        "nats": NatsSettings(url=nats_server.url),
        "signing_key_file": token_keys.private,
        "token_public_key_file": token_keys.public,
        "argon2_time_cost": 1,
        "argon2_memory_kib": 8192,
        "login_free_failures": 3,
        "history_target": f"127.0.0.1:{history_port}",
        "shutdown_drain_s": 0,
    }
    settings = SessionSettings(**{**values, **session_overrides})
    app = await build_session(settings)
    async with app:
        yield app


@pytest.fixture
async def session_channel(session_service: ServiceServer) -> AsyncIterator[grpc.aio.Channel]:
    """A client channel to the session service."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{session_service.port}") as channel:
        yield channel


@pytest.fixture
async def presence_service(
    nats_server: Nats, cql: CqlSettings, token_keys: KeyPair, history_port: int
) -> AsyncIterator[ServiceServer]:
    """The presence service on a fresh keyspace (its own KV bucket, so tests don't see each other's devices)."""
    settings = PresenceSettings(
        port=0,
        nats=NatsSettings(url=nats_server.url),
        cql=cql,
        kv_bucket=f"presence_{uuid.uuid4().hex[:12]}",
        token_public_key_file=token_keys.public,
        history_target=f"127.0.0.1:{history_port}",
        shutdown_drain_s=0,
    )
    app = await build_presence(settings)
    async with app:
        yield app


class Accounts:
    """Accounts made for users whose tokens a test signs itself (what Register would have stored)."""

    def __init__(self, store: AccountStore) -> None:
        self._store = store

    async def ensure(self, *user_ids: str) -> None:
        """Make each of ``user_ids`` an account (a no-op for one that is already)."""
        now = datetime.now(UTC)
        for user_id in user_ids:
            name = f"u{uuid.UUID(user_id).hex}"
            await self._store.create_account(Account(user_id, name, "unused", name), now)


@pytest.fixture
async def accounts(session_service: ServiceServer, session_cql: CqlSettings) -> AsyncIterator[Accounts]:
    """Writes accounts into the session service's keyspace (for users with self-signed tokens)."""
    session = await CqlSession.connect(session_cql, ())
    try:
        yield Accounts(AccountStore(session))
    finally:
        await session.close()
