"""LookupUsers: finding people by username and naming members by id, on real Cassandra."""

from __future__ import annotations

import uuid

import grpc
import pytest

from chatmesh.session.v1 import session_pb2 as pb
from chatmesh.session.v1 import session_pb2_grpc

PASSWORD = "correct horse battery"


def _name() -> str:
    return f"u{uuid.uuid4().hex[:12]}"


async def test_users_are_found_by_username_and_by_id_and_unknown_ones_are_left_out(
    session_channel: grpc.aio.Channel,
) -> None:
    stub = session_pb2_grpc.SessionServiceStub(session_channel)
    ann, bob = _name(), _name()
    a = await stub.Register(pb.RegisterRequest(username=ann, password=PASSWORD, display_name="Ann", device_name="x"))
    b = await stub.Register(pb.RegisterRequest(username=bob, password=PASSWORD, device_name="y"))
    auth = (("authorization", f"Bearer {a.tokens.access_token}"),)

    found = await stub.LookupUsers(
        pb.LookupUsersRequest(usernames=[bob, _name()], user_ids=[a.user_id, str(uuid.uuid4()), b.user_id]),
        metadata=auth,
    )

    assert [(u.user_id, u.username, u.display_name) for u in found.users] == [
        (b.user_id, bob, bob),  # display name defaults to the username
        (a.user_id, ann, "Ann"),
    ]


async def test_lookup_needs_a_token_and_something_to_look_up(session_channel: grpc.aio.Channel) -> None:
    stub = session_pb2_grpc.SessionServiceStub(session_channel)
    with pytest.raises(grpc.aio.AioRpcError) as unauthenticated:
        await stub.LookupUsers(pb.LookupUsersRequest(usernames=["ann"]))
    assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED

    a = await stub.Register(pb.RegisterRequest(username=_name(), password=PASSWORD, device_name="x"))
    auth = (("authorization", f"Bearer {a.tokens.access_token}"),)
    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await stub.LookupUsers(pb.LookupUsersRequest(), metadata=auth)
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "username" in (empty.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as bad_id:
        await stub.LookupUsers(pb.LookupUsersRequest(user_ids=["not-a-uuid"]), metadata=auth)
    assert bad_id.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "user_ids[0]" in (bad_id.value.details() or "")
