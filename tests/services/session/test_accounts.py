"""Register, login, refresh, logout and devices over gRPC, on real Cassandra."""

from __future__ import annotations

import uuid

import grpc
import pytest

from chatmesh.session.v1 import session_pb2 as pb
from chatmesh.session.v1 import session_pb2_grpc

PASSWORD = "correct horse battery"


def _stub(channel: grpc.aio.Channel) -> session_pb2_grpc.SessionServiceStub:
    return session_pb2_grpc.SessionServiceStub(channel)


def _name() -> str:
    return f"u{uuid.uuid4().hex[:12]}"


def _auth(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


async def test_a_registered_user_logs_in_and_the_token_lists_both_devices(session_channel: grpc.aio.Channel) -> None:
    stub = _stub(session_channel)
    username = _name()
    registered = await stub.Register(
        pb.RegisterRequest(username=username, password=PASSWORD, display_name="Ann", device_name="laptop")
    )
    assert uuid.UUID(registered.user_id) and registered.tokens.access_token and registered.tokens.refresh_token

    login = await stub.Login(pb.LoginRequest(username=username, password=PASSWORD, device_name="phone"))
    assert login.user_id == registered.user_id
    assert login.device_id != registered.device_id

    devices = await stub.ListDevices(pb.ListDevicesRequest(), metadata=_auth(login.tokens.access_token))
    assert [d.name for d in devices.devices] == ["phone", "laptop"]  # most recently seen first


async def test_a_taken_username_is_already_exists(session_channel: grpc.aio.Channel) -> None:
    stub = _stub(session_channel)
    username = _name()
    await stub.Register(pb.RegisterRequest(username=username, password=PASSWORD, device_name="a"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Register(pb.RegisterRequest(username=username, password="another password", device_name="b"))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "username" in (err.value.details() or "")


async def test_wrong_password_and_unknown_user_get_the_same_answer(session_channel: grpc.aio.Channel) -> None:
    stub = _stub(session_channel)
    username = _name()
    await stub.Register(pb.RegisterRequest(username=username, password=PASSWORD, device_name="a"))
    answers = []
    for name in (username, _name()):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Login(pb.LoginRequest(username=name, password="wrong password", device_name="a"))
        answers.append((err.value.code(), err.value.details()))
    assert answers[0] == answers[1] == (grpc.StatusCode.UNAUTHENTICATED, "wrong username or password")


async def test_repeated_wrong_passwords_are_rate_limited_with_a_retry_hint(session_channel: grpc.aio.Channel) -> None:
    stub = _stub(session_channel)
    username = _name()
    await stub.Register(pb.RegisterRequest(username=username, password=PASSWORD, device_name="a"))
    for _ in range(3):  # login_free_failures=3 in the fixture; from this address even the right password waits
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Login(pb.LoginRequest(username=username, password="wrong password", device_name="a"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Login(pb.LoginRequest(username=username, password=PASSWORD, device_name="a"))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    retry = dict(err.value.trailing_metadata() or ())
    assert 0 < int(retry["retry-after-ms"]) <= 300_000


async def test_refresh_rotates_and_a_replayed_refresh_token_ends_the_login(session_channel: grpc.aio.Channel) -> None:
    stub = _stub(session_channel)
    first = (await stub.Register(pb.RegisterRequest(username=_name(), password=PASSWORD, device_name="a"))).tokens
    second = (await stub.Refresh(pb.RefreshRequest(refresh_token=first.refresh_token))).tokens
    assert second.refresh_token != first.refresh_token

    # The first token was used: presenting it again looks like theft, so the whole login ends...
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Refresh(pb.RefreshRequest(refresh_token=first.refresh_token))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # ...including the rotated token the thief or the owner holds.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Refresh(pb.RefreshRequest(refresh_token=second.refresh_token))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_logout_stops_the_devices_refresh_token(session_channel: grpc.aio.Channel) -> None:
    stub = _stub(session_channel)
    tokens = (await stub.Register(pb.RegisterRequest(username=_name(), password=PASSWORD, device_name="a"))).tokens
    await stub.Logout(pb.LogoutRequest(), metadata=_auth(tokens.access_token))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Refresh(pb.RefreshRequest(refresh_token=tokens.refresh_token))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_revoking_a_lost_device_removes_it_and_its_login(session_channel: grpc.aio.Channel) -> None:
    stub = _stub(session_channel)
    username = _name()
    laptop = await stub.Register(pb.RegisterRequest(username=username, password=PASSWORD, device_name="laptop"))
    phone = await stub.Login(pb.LoginRequest(username=username, password=PASSWORD, device_name="phone"))
    auth = _auth(laptop.tokens.access_token)

    await stub.RevokeDevice(pb.RevokeDeviceRequest(device_id=phone.device_id), metadata=auth)

    devices = await stub.ListDevices(pb.ListDevicesRequest(), metadata=auth)
    assert [d.device_id for d in devices.devices] == [laptop.device_id]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Refresh(pb.RefreshRequest(refresh_token=phone.tokens.refresh_token))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RevokeDevice(pb.RevokeDeviceRequest(device_id=str(uuid.uuid4())), metadata=auth)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
