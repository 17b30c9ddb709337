"""Presence privacy end to end through the gateway: contacts see presence, strangers see a never-online user."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest

from chatmesh.presence.v1 import presence_pb2 as ppb
from chatmesh.presence.v1 import presence_pb2_grpc
from tests.e2e.chat import Device, direct, register
from tests.e2e.conftest import Gateway


@pytest.fixture
async def channel(chat_gateway: Gateway) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(chat_gateway.target) as ch:
        yield ch


async def _presence(channel: grpc.aio.Channel, reader: Device, *user_ids: str) -> list[ppb.UserPresence]:
    stub = presence_pb2_grpc.PresenceServiceStub(channel)
    return list(
        (await stub.GetPresence(ppb.GetPresenceRequest(user_ids=list(user_ids)), metadata=reader.auth)).presences
    )


async def test_only_contacts_see_presence_and_last_seen_can_be_hidden(channel: grpc.aio.Channel) -> None:
    ann, bob, stranger = await register(channel), await register(channel), await register(channel)
    await direct(bob, ann)
    presence = presence_pb2_grpc.PresenceServiceStub(channel)
    await stranger.connect(watch=(ann.user_id,))
    await bob.connect(watch=(ann.user_id,))
    await presence.Heartbeat(ppb.HeartbeatRequest(active=True), metadata=ann.auth)

    _, online = await bob.next("presence_changed")
    assert online.presence_changed.presence.state == ppb.PRESENCE_STATE_ONLINE
    (seen,) = await _presence(channel, bob, ann.user_id)
    assert seen.state == ppb.PRESENCE_STATE_ONLINE and seen.HasField("last_seen_at")

    of_ann, of_nobody = await _presence(channel, stranger, ann.user_id, str(uuid.uuid4()))
    for shown in (of_ann, of_nobody):
        assert (shown.state, shown.HasField("last_seen_at"), shown.device_count) == (
            ppb.PRESENCE_STATE_UNSPECIFIED,
            False,
            0,
        )
    assert await stranger.quiet("presence_changed") == []

    await presence.UpdatePrivacy(
        ppb.UpdatePrivacyRequest(privacy=ppb.PrivacySettings(hide_last_seen=True)), metadata=ann.auth
    )
    (seen,) = await _presence(channel, bob, ann.user_id)
    assert seen.state == ppb.PRESENCE_STATE_ONLINE and not seen.HasField("last_seen_at")
    for device in (bob, stranger):
        await device.disconnect()
