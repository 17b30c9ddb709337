"""Login throttling through the gateway: the address that counts is the connection's, not one a client claims."""

from __future__ import annotations

import uuid

import grpc
import pytest

from chatmesh.session.v1 import session_pb2 as pb
from chatmesh.session.v1 import session_pb2_grpc
from tests.e2e.conftest import Gateway

PASSWORD = "correct horse battery"


async def test_a_client_naming_other_addresses_is_throttled_by_its_own(gateway: Gateway) -> None:
    async with grpc.aio.insecure_channel(gateway.target) as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        username = f"u{uuid.uuid4().hex[:12]}"
        await stub.Register(pb.RegisterRequest(username=username, password=PASSWORD, device_name="laptop"))
        codes = []
        for i in range(4):  # three free failures in the session fixture, then back-off
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Login(
                    pb.LoginRequest(username=username, password="guess", device_name="d"),
                    # The gateway replaces this with the connection's address before session sees it.
                    metadata=(("x-chatmesh-client-address", f"192.0.2.{i}"),),
                )
            codes.append(err.value.code())
        assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 3 + [grpc.StatusCode.RESOURCE_EXHAUSTED]
        assert int(dict(err.value.trailing_metadata() or ())["retry-after-ms"]) > 0
