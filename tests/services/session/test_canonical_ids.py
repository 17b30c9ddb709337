"""Ids in upper case name the same user and device as their canonical (lower-case) form."""

from __future__ import annotations

import uuid

import grpc
import pytest

from chatmesh.session.v1 import session_pb2 as pb
from chatmesh.session.v1 import session_pb2_grpc

PASSWORD = "correct horse battery"


def _auth(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


async def test_upper_case_device_and_user_ids_are_the_same_device_and_user(session_channel: grpc.aio.Channel) -> None:
    stub = session_pb2_grpc.SessionServiceStub(session_channel)
    username = f"u{uuid.uuid4().hex[:12]}"
    first = await stub.Register(pb.RegisterRequest(username=username, password=PASSWORD, device_name="laptop"))

    again = await stub.Login(
        pb.LoginRequest(username=username, password=PASSWORD, device_name="laptop", device_id=first.device_id.upper())
    )
    assert again.device_id == first.device_id  # the same device logged in again, not a second one
    devices = await stub.ListDevices(pb.ListDevicesRequest(), metadata=_auth(again.tokens.access_token))
    assert [d.device_id for d in devices.devices] == [first.device_id]

    found = await stub.LookupUsers(
        pb.LookupUsersRequest(user_ids=[first.user_id.upper(), first.user_id]),
        metadata=_auth(again.tokens.access_token),
    )
    assert [u.user_id for u in found.users] == [first.user_id]

    await stub.RevokeDevice(
        pb.RevokeDeviceRequest(device_id=first.device_id.upper()), metadata=_auth(again.tokens.access_token)
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:  # the device is logged out: its refresh token is dead
        await stub.Refresh(pb.RefreshRequest(refresh_token=again.tokens.refresh_token))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
