"""One user flooding Generate on the bundled model: they are refused their excess, others still get answers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest

from chatmesh.inference.v1 import inference_pb2 as pb
from chatmesh.inference.v1 import inference_pb2_grpc
from mesh.deps.nats import Nats
from services.inference.server import build
from services.runtime.server import ServiceServer
from services.runtime.tokens import Principal, TokenSigner, load_private_key
from tests.conftest import KeyPair
from tests.conftest_inference import inference_settings
from tests.services.inference.conftest import GREEDY, Caller


@pytest.fixture
async def fair_inference(nats_server: Nats, token_keys: KeyPair) -> AsyncIterator[ServiceServer]:
    """One slot, a queue of four, at most two waiting requests per user."""
    app = await build(inference_settings(nats_server, token_keys, queue_size=4, max_queued_per_user=2))
    async with app:
        yield app


@pytest.fixture
async def fair_callers(fair_inference: ServiceServer, token_keys: KeyPair) -> AsyncIterator[tuple[Caller, Caller]]:
    signer = TokenSigner(load_private_key(token_keys.private), "chatmesh", 3600)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{fair_inference.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        callers = []
        for _ in range(2):
            principal = Principal(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()))
            callers.append(Caller(principal.user_id, signer.sign(principal).token, stub))
        yield callers[0], callers[1]


async def test_a_user_with_twenty_open_generates_is_refused_the_excess_and_another_user_is_answered(
    fair_callers: tuple[Caller, Caller],
) -> None:
    flooder, other = fair_callers
    long = pb.SamplingParams(temperature=0, max_tokens=64, seed=1)
    calls = [
        flooder.stub.Generate(pb.GenerateRequest(prompt=f"Story {i}:", sampling=long), metadata=flooder.auth)
        for i in range(20)
    ]
    admitted, refused = [], []
    for call in calls:
        try:
            assert (await call.read()).HasField("started")
            admitted.append(call)
        except grpc.aio.AioRpcError as exc:
            refused.append(exc)
    assert len(admitted) == 3  # one running, two waiting: the most one user may have
    assert len(refused) == 17
    for exc in refused:
        assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "the most one user may have" in (exc.details() or "")
        assert int(dict(exc.trailing_metadata() or ())["retry-after-ms"]) > 0

    chunks = [
        c async for c in other.stub.Generate(pb.GenerateRequest(prompt="Hi", sampling=GREEDY), metadata=other.auth)
    ]
    assert chunks[0].HasField("started") and chunks[-1].HasField("finished")
    assert chunks[-1].finished.usage.completion_tokens >= 1
    for call in admitted:
        call.cancel()
