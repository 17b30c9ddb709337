"""Callers of the inference service (the service fixture: tests/conftest_inference.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc
import pytest

from chatmesh.inference.v1 import inference_pb2 as pb
from chatmesh.inference.v1 import inference_pb2_grpc
from services.runtime.server import ServiceServer
from services.runtime.tokens import Principal, TokenSigner, load_private_key
from tests.conftest import KeyPair

GREEDY = pb.SamplingParams(temperature=0, max_tokens=4, seed=1)


@dataclass
class Caller:
    """A user with a token and an InferenceService stub."""

    user_id: str
    token: str
    stub: inference_pb2_grpc.InferenceServiceStub

    @property
    def auth(self) -> tuple[tuple[str, str]]:
        """Call metadata carrying the token."""
        return (("authorization", f"Bearer {self.token}"),)


@pytest.fixture
async def inference_channel(inference_service: ServiceServer) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to the inference service."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{inference_service.port}") as channel:
        yield channel


@pytest.fixture
def signer(token_keys: KeyPair) -> TokenSigner:
    """Signs access tokens the way session does."""
    return TokenSigner(load_private_key(token_keys.private), "chatmesh", 3600)


@pytest.fixture
def make_caller(signer: TokenSigner, inference_channel: grpc.aio.Channel) -> Callable[[], Caller]:
    """Factory of users calling inference."""

    def make() -> Caller:
        principal = Principal(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()))
        return Caller(
            principal.user_id, signer.sign(principal).token, inference_pb2_grpc.InferenceServiceStub(inference_channel)
        )

    return make
