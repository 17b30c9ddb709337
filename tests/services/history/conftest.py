"""Clients acting as users of the history service (the service fixture: tests/conftest_history.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from chatmesh.history.v1 import history_pb2_grpc
from services.runtime.interceptors import ON_BEHALF_OF
from services.runtime.server import ServiceServer
from services.runtime.tokens import Principal, ServiceTokenSigner, TokenSigner, load_private_key
from tests.conftest import KeyPair
from tests.conftest_services import Accounts


@dataclass
class User:
    """A user with a token and a HistoryService stub."""

    user_id: str
    device_id: str
    token: str
    stub: history_pb2_grpc.HistoryServiceStub
    service_token: str = ""

    @property
    def auth(self) -> tuple[tuple[str, str]]:
        """Call metadata carrying the token."""
        return (("authorization", f"Bearer {self.token}"),)

    @property
    def as_inference(self) -> tuple[tuple[str, str], ...]:
        """Call metadata of the inference service acting for this user (a service token)."""
        return (("authorization", f"Bearer {self.service_token}"), (ON_BEHALF_OF, self.user_id))


@pytest.fixture
async def history_channel(history_service: ServiceServer) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to the history service."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{history_service.port}") as channel:
        yield channel


@pytest.fixture
def make_user(
    token_keys: KeyPair, service_keys: KeyPair, history_channel: grpc.aio.Channel, accounts: Accounts
) -> object:
    """Factory of users (accounts in session) with valid access tokens (as session would issue them)."""
    signer = TokenSigner(load_private_key(token_keys.private), "chatmesh", 3600)
    inference = ServiceTokenSigner.from_file(service_keys.private, "chatmesh", "inference")

    async def make() -> User:
        principal = Principal(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()))
        await accounts.ensure(principal.user_id)
        return User(
            principal.user_id,
            principal.device_id,
            signer.sign(principal).token,
            history_pb2_grpc.HistoryServiceStub(history_channel),
            inference.token(),
        )

    return make
