"""Bytes that are not the method's message get INVALID_ARGUMENT at once, naming no internals.

Straight at the session service, as raw bytes (what a broken or hostile client sends):
garbage, a message cut short, invalid UTF-8 in a string field, no message at all.
"""

from __future__ import annotations

import time

import grpc
import pytest

from chatmesh.session.v1 import session_pb2 as spb
from services.runtime.server import ServiceServer

LOGIN = "/chatmesh.session.v1.SessionService/Login"
LIST_DEVICES = "/chatmesh.session.v1.SessionService/ListDevices"


def _utf8_broken_login() -> bytes:
    valid = spb.LoginRequest(username="ann_example", password="correct horse battery", device_name="x")
    raw = valid.SerializeToString()
    return raw.replace(b"ann_example", b"ann\xff\xfeexample")  # same length: still a well-formed field


CASES = {
    "garbage": b"\xff\xff\xff\xff\xff\xff",
    "truncated": spb.LoginRequest(username="ann_example", password="p" * 20).SerializeToString()[:-5],
    "invalid-utf8-string": _utf8_broken_login(),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_undecodable_requests_are_invalid_argument_within_a_second(
    session_service: ServiceServer, case: str
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{session_service.port}") as channel:
        login = channel.unary_unary(LOGIN, request_serializer=None, response_deserializer=None)
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await login(CASES[case], timeout=10)
        took = time.monotonic() - started
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    details = err.value.details() or ""
    assert "chatmesh.session.v1.LoginRequest" in details
    for internal in ("DecodeError", "Traceback", "Error parsing", "google.protobuf", ".py"):
        assert internal not in details
    assert took < 5, f"answered after {took:.1f}s"


async def test_a_call_that_half_closes_without_a_message_is_invalid_argument(session_service: ServiceServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{session_service.port}") as channel:
        call = channel.stream_unary(LOGIN, request_serializer=None, response_deserializer=None)()
        await call.done_writing()
        code, details = await call.code(), await call.details()
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "no chatmesh.session.v1.LoginRequest message" in details


async def test_a_second_message_to_a_unary_method_changes_nothing(session_service: ServiceServer) -> None:
    # The first message is the request; anything after it is ignored, never a crash.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{session_service.port}") as channel:
        call = channel.stream_unary(LOGIN, request_serializer=None, response_deserializer=None)()
        await call.write(
            spb.LoginRequest(username="nobody_here", password="wrong password", device_name="x").SerializeToString()
        )
        await call.write(b"\xff\xff")
        await call.done_writing()
        code = await call.code()
    assert code == grpc.StatusCode.UNAUTHENTICATED  # the first message's answer: a wrong password
