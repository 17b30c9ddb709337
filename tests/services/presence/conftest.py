"""Presence services started in-process on the run's NATS and Cassandra, and devices calling them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import nats
import pytest
from nats.aio.client import Client

from chatmesh.history.v1 import history_pb2, history_pb2_grpc
from chatmesh.presence.v1 import presence_pb2 as pb
from chatmesh.presence.v1 import presence_pb2_grpc
from mesh.deps.nats import Nats
from services.presence.server import PresenceApp, assemble
from services.presence.settings import PresenceSettings
from services.runtime.bus import NatsSettings
from services.runtime.cql import CqlSettings
from services.runtime.server import ServiceServer
from services.runtime.tokens import Principal, TokenSigner, load_private_key
from tests.conftest import KeyPair
from tests.conftest_services import Accounts


@dataclass
class Device:
    """One device of a user, with its own access token and a PresenceService stub."""

    user_id: str
    device_id: str
    token: str
    stub: presence_pb2_grpc.PresenceServiceStub

    @property
    def auth(self) -> tuple[tuple[str, str]]:
        """Call metadata carrying the token."""
        return (("authorization", f"Bearer {self.token}"),)

    async def heartbeat(self, active: bool = True) -> pb.HeartbeatResponse:
        """Send one Heartbeat."""
        reply: pb.HeartbeatResponse = await self.stub.Heartbeat(pb.HeartbeatRequest(active=active), metadata=self.auth)
        return reply

    async def presence(self, *user_ids: str) -> list[pb.UserPresence]:
        """GetPresence of ``user_ids``."""
        reply = await self.stub.GetPresence(pb.GetPresenceRequest(user_ids=list(user_ids)), metadata=self.auth)
        return list(reply.presences)


@pytest.fixture
def presence_settings(
    nats_server: Nats, cql: CqlSettings, token_keys: KeyPair, history_port: int
) -> Callable[..., PresenceSettings]:
    """Settings of a presence replica on this test's keyspace and KV bucket; keywords override.

    History (contacts, membership) is the test's history service: only tests that use
    ``befriend`` (or ``history_service``) start it.
    """
    bucket = f"presence_{uuid.uuid4().hex[:12]}"

    def make(**overrides: Any) -> PresenceSettings:
        values: dict[str, Any] = {
            "port": 0,
            "nats": NatsSettings(url=nats_server.url),
            "cql": cql,
            "kv_bucket": bucket,
            "token_public_key_file": token_keys.public,
            "shutdown_drain_s": 0,
            "shutdown_grace_s": 0.5,
            "debounce_s": 0.3,
            "sweep_interval_s": 0.1,
            "history_target": f"127.0.0.1:{history_port}",
            "contacts_cache_s": 0,
            "privacy_cache_s": 0,
        }
        values.update(overrides)
        return PresenceSettings(**values)

    return make


class Replicas:
    """Presence replicas of one test (same keyspace and bucket unless overridden)."""

    def __init__(self, settings: Callable[..., PresenceSettings]) -> None:
        self._settings = settings
        self.running: list[PresenceApp] = []

    async def start(self, **overrides: Any) -> PresenceApp:
        """Build and start a replica; keywords override settings."""
        app = await assemble(self._settings(**overrides))
        await app.server.start()
        self.running.append(app)
        return app

    async def stop(self, app: PresenceApp) -> None:
        """Stop a replica gracefully (as on SIGTERM)."""
        self.running.remove(app)
        await app.server.stop()


@pytest.fixture
async def replicas(presence_settings: Callable[..., PresenceSettings]) -> AsyncIterator[Replicas]:
    """Starts presence replicas; stops those still running at the end."""
    started = Replicas(presence_settings)
    try:
        yield started
    finally:
        for app in list(started.running):
            await started.stop(app)


@pytest.fixture
async def presence(replicas: Replicas) -> PresenceApp:
    """One presence replica with test-speed debounce and sweep."""
    return await replicas.start()


@pytest.fixture
async def bus(nats_server: Nats) -> AsyncIterator[Client]:
    """A plain NATS client, as session or a subscriber would be."""
    nc = await nats.connect(nats_server.url)
    try:
        yield nc
    finally:
        await nc.close()


@pytest.fixture
async def channels() -> AsyncIterator[Callable[[PresenceApp], grpc.aio.Channel]]:
    """Client channels to replicas, closed at the end."""
    opened: list[grpc.aio.Channel] = []

    def open_channel(app: PresenceApp) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.server.port}")
        opened.append(channel)
        return channel

    try:
        yield open_channel
    finally:
        for channel in opened:
            await channel.close()


@pytest.fixture
def make_device(
    token_keys: KeyPair, presence: PresenceApp, channels: Callable[[PresenceApp], grpc.aio.Channel]
) -> Callable[..., Device]:
    """Factory of devices (of a new user, or of ``user_id``) calling ``app`` (default: the presence fixture)."""
    signer = TokenSigner(load_private_key(token_keys.private), "chatmesh", 3600)

    def make(user_id: str | None = None, app: PresenceApp | None = None) -> Device:
        principal = Principal(user_id or str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()))
        stub = presence_pb2_grpc.PresenceServiceStub(channels(app or presence))
        return Device(principal.user_id, principal.device_id, signer.sign(principal).token, stub)

    return make


Befriend = Callable[[Device, Device], Awaitable[str]]


@pytest.fixture
async def befriend(history_service: ServiceServer, accounts: Accounts) -> AsyncIterator[Befriend]:
    """Makes two users contacts: accounts for both, and a direct conversation (its id returned)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{history_service.port}") as channel:
        stub = history_pb2_grpc.HistoryServiceStub(channel)

        async def make(a: Device, b: Device) -> str:
            await accounts.ensure(a.user_id, b.user_id)
            reply = await stub.CreateConversation(
                history_pb2.CreateConversationRequest(
                    kind=history_pb2.CONVERSATION_KIND_DIRECT, peer_user_id=b.user_id
                ),
                metadata=a.auth,
            )
            return str(reply.conversation.conversation_id)

        yield make
