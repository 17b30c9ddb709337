"""A browser's gRPC-web bytes through the real Envoy gateway to the session service."""

from __future__ import annotations

import time
import uuid

from chatmesh.session.v1 import session_pb2 as pb
from services.runtime.tokens import Principal, TokenSigner, load_private_key
from tests.conftest import KeyPair
from tests.e2e.conftest import Gateway
from tests.e2e.grpcweb import call, frame

SESSION = "/chatmesh.session.v1.SessionService"
UNAUTHENTICATED, INVALID_ARGUMENT, RESOURCE_EXHAUSTED = 16, 3, 8


def _username() -> str:
    return f"w{uuid.uuid4().hex[:12]}"


async def test_a_browser_registers_logs_in_and_uses_its_token_through_the_gateway(gateway: Gateway) -> None:
    username = _username()
    register = await call(
        gateway.url,
        f"{SESSION}/Register",
        pb.RegisterRequest(username=username, password="correct horse", device_name="firefox"),
    )
    assert register.http_status == 200
    assert register.headers.get("access-control-allow-origin") == "http://127.0.0.1:5173"
    registered = register.parse(pb.RegisterResponse)
    assert registered.tokens.access_token.count(".") == 2

    login = (
        await call(
            gateway.url,
            f"{SESSION}/Login",
            pb.LoginRequest(username=username, password="correct horse", device_name="chromium"),
        )
    ).parse(pb.LoginResponse)
    assert login.user_id == registered.user_id

    devices = (
        await call(gateway.url, f"{SESSION}/ListDevices", pb.ListDevicesRequest(), token=login.tokens.access_token)
    ).parse(pb.ListDevicesResponse)
    assert sorted(d.name for d in devices.devices) == ["chromium", "firefox"]


async def test_without_a_valid_token_the_gateway_answers_unauthenticated(gateway: Gateway, token_keys: KeyPair) -> None:
    signer = TokenSigner(load_private_key(token_keys.private), "chatmesh", 60)
    principal = Principal(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()))
    expired = signer.sign(principal, now=time.time() - 3600).token
    valid = signer.sign(principal).token
    tampered = valid[:-4] + ("AAAA" if not valid.endswith("AAAA") else "BBBB")
    for token in (None, expired, tampered):
        reply = await call(gateway.url, f"{SESSION}/ListDevices", pb.ListDevicesRequest(), token=token)
        assert reply.grpc_status == UNAUTHENTICATED, (token, reply)
        assert not reply.messages


async def test_a_wrong_password_is_unauthenticated_without_saying_whether_the_user_exists(gateway: Gateway) -> None:
    username = _username()
    await call(
        gateway.url,
        f"{SESSION}/Register",
        pb.RegisterRequest(username=username, password="right password", device_name="a"),
    )
    known = await call(
        gateway.url, f"{SESSION}/Login", pb.LoginRequest(username=username, password="wrong password", device_name="a")
    )
    unknown = await call(
        gateway.url,
        f"{SESSION}/Login",
        pb.LoginRequest(username=_username(), password="wrong password", device_name="a"),
    )
    assert (known.grpc_status, known.grpc_message) == (unknown.grpc_status, unknown.grpc_message)
    assert known.grpc_status == UNAUTHENTICATED


async def test_a_broken_field_rule_is_invalid_argument_naming_the_field(gateway: Gateway) -> None:
    reply = await call(
        gateway.url, f"{SESSION}/Register", pb.RegisterRequest(username="ab", password="long enough", device_name="a")
    )
    assert reply.grpc_status == INVALID_ARGUMENT
    assert reply.grpc_message.startswith("username: ")


async def test_a_malformed_body_gets_an_error_and_the_gateway_keeps_serving(gateway: Gateway) -> None:
    bad_bodies = [
        b"\x00\x00\x00\x00\x10\xff\xff",  # frame claims 16 bytes, carries 2
        frame(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"),  # not a protobuf message
        b"hello, not grpc-web",
    ]
    for body in bad_bodies:
        reply = await call(gateway.url, f"{SESSION}/Login", body)
        assert reply.grpc_status not in (0, -1) or reply.http_status >= 400, (body, reply)
    # Still serving, on the same route:
    good = await call(
        gateway.url,
        f"{SESSION}/Register",
        pb.RegisterRequest(username=_username(), password="long enough", device_name="a"),
    )
    assert good.grpc_status == 0


async def test_an_oversized_request_is_resource_exhausted(gateway: Gateway) -> None:
    huge = pb.RegisterRequest(username=_username(), password="x" * (2 * 1024 * 1024), device_name="a")
    reply = await call(gateway.url, f"{SESSION}/Register", huge)
    assert reply.grpc_status == RESOURCE_EXHAUSTED, reply
    good = await call(
        gateway.url,
        f"{SESSION}/Register",
        pb.RegisterRequest(username=_username(), password="long enough", device_name="a"),
    )
    assert good.grpc_status == 0
