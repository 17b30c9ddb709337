"""SetTyping over gRPC: membership checked by the real history service, typing on live.user subjects."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import grpc
import pytest
from nats.aio.client import Client

from chatmesh.events.v1 import events_pb2
from chatmesh.presence.v1 import presence_pb2 as pb
from mesh.deps.base import free_port
from services.presence.server import PresenceApp
from services.runtime.server import ServiceServer
from tests.services.presence.conftest import Befriend, Device, Replicas

MakeDevice = Callable[..., Device]


@pytest.fixture
async def typing_presence(replicas: Replicas, history_service: ServiceServer) -> PresenceApp:
    """A presence replica asking the in-process history service about membership."""
    return await replicas.start(history_target=f"127.0.0.1:{history_service.port}")


class LiveInbox:
    """Typing events arriving on one user's live subject."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[events_pb2.Event] = asyncio.Queue()

    async def on_message(self, msg: object) -> None:
        await self.events.put(events_pb2.Event.FromString(msg.data))  # type: ignore[attr-defined]


async def test_set_typing_reaches_the_other_member_and_not_the_caller(
    typing_presence: PresenceApp,
    make_device: MakeDevice,
    befriend: Befriend,
    bus: Client,
) -> None:
    ann, bob = make_device(app=typing_presence), make_device(app=typing_presence)
    conversation = await befriend(ann, bob)
    ann_inbox, bob_inbox = LiveInbox(), LiveInbox()
    subs = [
        await bus.subscribe(f"live.user.{ann.user_id}", cb=ann_inbox.on_message),
        await bus.subscribe(f"live.user.{bob.user_id}", cb=bob_inbox.on_message),
    ]
    try:
        await bus.flush()
        reply = await ann.stub.SetTyping(
            pb.SetTypingRequest(conversation_id=conversation, typing=True), metadata=ann.auth
        )
        assert reply.expires_in_ms == 5000

        event = await asyncio.wait_for(bob_inbox.events.get(), 3)
        assert event.WhichOneof("kind") == "typing"
        assert (event.typing.conversation_id, event.typing.user_id, event.typing.typing) == (
            conversation,
            ann.user_id,
            True,
        )
        assert event.typing.expires_in_ms == 5000

        await ann.stub.SetTyping(pb.SetTypingRequest(conversation_id=conversation, typing=False), metadata=ann.auth)
        stopped = await asyncio.wait_for(bob_inbox.events.get(), 3)
        assert (stopped.typing.typing, stopped.typing.expires_in_ms) == (False, 0)
        await asyncio.sleep(0.3)
        assert ann_inbox.events.empty(), "the caller's own devices are not told"
    finally:
        for sub in subs:
            await sub.unsubscribe()


async def test_set_typing_in_someone_elses_conversation_is_permission_denied(
    typing_presence: PresenceApp, make_device: MakeDevice, befriend: Befriend
) -> None:
    ann, bob, eve = (make_device(app=typing_presence) for _ in range(3))
    conversation = await befriend(ann, bob)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await eve.stub.SetTyping(pb.SetTypingRequest(conversation_id=conversation, typing=True), metadata=eve.auth)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "conversation_id" in (err.value.details() or "")


async def test_set_typing_in_an_unknown_conversation_is_not_found(
    typing_presence: PresenceApp, make_device: MakeDevice
) -> None:
    ann = make_device(app=typing_presence)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ann.stub.SetTyping(pb.SetTypingRequest(conversation_id=str(uuid.uuid4()), typing=True), metadata=ann.auth)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_set_typing_while_history_is_down_is_unavailable(replicas: Replicas, make_device: MakeDevice) -> None:
    app = await replicas.start(history_target=f"127.0.0.1:{free_port()}")  # nobody serves there
    ann = make_device(app=app)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ann.stub.SetTyping(pb.SetTypingRequest(conversation_id=str(uuid.uuid4()), typing=True), metadata=ann.auth)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
