"""The history service in-process on real NATS and Cassandra, and clients acting as users."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from chatmesh.history.v1 import history_pb2_grpc
from mesh.deps.nats import Nats
from services.history.server import build
from services.history.settings import HistorySettings
from services.runtime.bus import NatsSettings
from services.runtime.cql import CqlSettings
from services.runtime.server import ServiceServer
from services.runtime.tokens import Principal, TokenSigner, load_private_key
from tests.conftest import KeyPair


@pytest.fixture
async def history_service(cql: CqlSettings, nats_server: Nats, token_keys: KeyPair) -> AsyncIterator[ServiceServer]:
    """History with a generous send rate (tests send fast on purpose)."""
    settings = HistorySettings(
        port=0,
        cql=cql,
        nats=NatsSettings(url=nats_server.url),
        token_public_key_file=token_keys.public,
        sends_per_second=10_000,
        send_burst=10_000,
        shutdown_drain_s=0,
    )
    app = await build(settings)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


@dataclass
class User:
    """A user with a token and a HistoryService stub."""

    user_id: str
    device_id: str
    token: str
    stub: history_pb2_grpc.HistoryServiceStub

    @property
    def auth(self) -> tuple[tuple[str, str]]:
        """Call metadata carrying the token."""
        return (("authorization", f"Bearer {self.token}"),)


@pytest.fixture
async def history_channel(history_service: ServiceServer) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to the history service."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{history_service.port}") as channel:
        yield channel


@pytest.fixture
def make_user(token_keys: KeyPair, history_channel: grpc.aio.Channel) -> object:
    """Factory of users with valid access tokens (as session would issue them)."""
    signer = TokenSigner(load_private_key(token_keys.private), "chatmesh", 3600)

    def make() -> User:
        principal = Principal(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()))
        return User(
            principal.user_id,
            principal.device_id,
            signer.sign(principal).token,
            history_pb2_grpc.HistoryServiceStub(history_channel),
        )

    return make
