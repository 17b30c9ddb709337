"""A server that stops on purpose (a rolling restart) drains: streams are told to reconnect, calls finish."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chatmesh.forms.v1 import forms_pb2, forms_pb2_grpc
from services.runtime.server import ServiceBinding, ServiceServer, create_server
from services.runtime.settings import ServiceSettings
from services.runtime.tokens import Principal, TokenSigner, load_private_key
from tests.conftest import KeyPair

NAME = forms_pb2.DESCRIPTOR.services_by_name["FormsService"].full_name
WATCH = f"/{NAME}/WatchSubmission"


class _Forms(forms_pb2_grpc.FormsServiceServicer):
    """WatchSubmission streams a status every 50 ms (5 of them, or forever); GetForm takes 0.6 s."""

    def __init__(self, items: int | None) -> None:
        self.items = items

    async def WatchSubmission(  # noqa: N802 - the generated name
        self, request: forms_pb2.WatchSubmissionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[forms_pb2.WatchSubmissionResponse]:
        sent = 0
        while self.items is None or sent < self.items:
            yield forms_pb2.WatchSubmissionResponse()
            sent += 1
            await asyncio.sleep(0.05)

    async def GetForm(  # noqa: N802
        self, request: forms_pb2.GetFormRequest, context: grpc.aio.ServicerContext
    ) -> forms_pb2.GetFormResponse:
        await asyncio.sleep(0.6)
        return forms_pb2.GetFormResponse()


def _server(keys: KeyPair, items: int | None, finishing: tuple[str, ...] = ()) -> ServiceServer:
    return create_server(
        "drain",
        ServiceSettings(port=0, token_public_key_file=keys.public, shutdown_drain_s=0.3, shutdown_grace_s=5),
        [
            ServiceBinding(
                NAME, forms_pb2_grpc.add_FormsServiceServicer_to_server, _Forms(items), finishing_methods=finishing
            )
        ],
    )


def _metadata(keys: KeyPair) -> tuple[tuple[str, str]]:
    signer = TokenSigner(load_private_key(keys.private), "chatmesh", 900)
    token = signer.sign(Principal(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()))).token
    return (("authorization", f"Bearer {token}"),)


async def test_open_streams_are_told_to_reconnect_and_calls_in_flight_finish(token_keys: KeyPair) -> None:
    app = _server(token_keys, items=None)
    await app.start()
    metadata = _metadata(token_keys)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = forms_pb2_grpc.FormsServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        stream = stub.WatchSubmission(
            forms_pb2.WatchSubmissionRequest(submission_id=str(uuid.uuid4())), metadata=metadata
        )
        assert await stream.read() is not grpc.aio.EOF
        slow = asyncio.ensure_future(
            stub.GetForm(forms_pb2.GetFormRequest(form_id=str(uuid.uuid4())), metadata=metadata)
        )
        await asyncio.sleep(0.1)  # GetForm is in flight
        stopping = asyncio.ensure_future(app.stop())
        await asyncio.sleep(0.1)
        # Draining: health says so at once, while the stream still runs (the balancer's time to notice).
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert await stream.read() is not grpc.aio.EOF
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            while True:
                if await stream.read() is grpc.aio.EOF:
                    break
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "reconnect" in (ended.value.details() or "")
        # A stream opened now is refused the same way; the unary call in flight finished fine.
        late = stub.WatchSubmission(
            forms_pb2.WatchSubmissionRequest(submission_id=str(uuid.uuid4())), metadata=metadata
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await late.read()
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        await slow
        await stopping


async def test_finishing_streams_run_to_their_end(token_keys: KeyPair) -> None:
    app = _server(token_keys, items=12, finishing=(WATCH,))
    await app.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = forms_pb2_grpc.FormsServiceStub(channel)
        stream = stub.WatchSubmission(
            forms_pb2.WatchSubmissionRequest(submission_id=str(uuid.uuid4())), metadata=_metadata(token_keys)
        )
        assert await stream.read() is not grpc.aio.EOF
        stopping = asyncio.ensure_future(app.stop())
        received = 1
        while await stream.read() is not grpc.aio.EOF:
            received += 1
        assert received == 12
        assert await stream.code() == grpc.StatusCode.OK
        await stopping
