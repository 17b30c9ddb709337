"""One-to-one chat on several devices, end to end through the gateway (real NATS, Cassandra, Envoy)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import nats
import pytest

from chatmesh.history.v1 import history_pb2 as hpb
from chatmesh.presence.v1 import presence_pb2, presence_pb2_grpc
from mesh.deps.nats import Nats
from tests.e2e.chat import another_device, direct, register
from tests.e2e.conftest import Gateway


@pytest.fixture
async def channel(chat_gateway: Gateway) -> AsyncIterator[grpc.aio.Channel]:
    """A client channel to the gateway (gRPC over h2c, as SDKs and grpcurl use it)."""
    async with grpc.aio.insecure_channel(chat_gateway.target) as ch:
        yield ch


async def test_a_message_reaches_every_other_device_once_and_in_order(channel: grpc.aio.Channel) -> None:
    a1 = await register(channel, "a-laptop")
    a2 = await another_device(a1, "a-phone")
    b1 = await register(channel, "b-laptop")
    b2 = await another_device(b1, "b-phone")
    conversation = await direct(a1, b1)
    for device in (a2, b1, b2):
        await device.connect()

    sent = [await a1.send(conversation, f"message {i}") for i in range(10)]

    for device in (a2, b1, b2):
        got = [e.message_created.message for _, e in await device.collect("message_created", 10)]
        assert [m.message_id for m in got] == [m.message_id for m in sent]
        assert [m.sequence for m in got] == list(range(1, 11))
        assert await device.quiet("message_created") == []
        await device.disconnect()


async def test_a_device_that_reconnects_gets_exactly_the_messages_it_missed(channel: grpc.aio.Channel) -> None:
    a = await register(channel)
    b1 = await register(channel, "b-laptop")
    b2 = await another_device(b1, "b-phone")
    conversation = await direct(a, b1)
    await b2.connect()
    await a.send(conversation, "before the drop")
    await b2.next("message_created")
    await b2.disconnect()

    missed = [await a.send(conversation, f"while away {i}") for i in range(50)]

    await b2.connect()  # from its last sequence
    got = [e.message_created.message for _, e in await b2.collect("message_created", 50)]
    assert [m.message_id for m in got] == [m.message_id for m in missed]
    assert await b2.quiet("message_created") == []
    await b2.disconnect()


async def test_a_device_whose_gap_is_past_retention_is_told_to_resync(short_retention_gateway: Gateway) -> None:
    async with grpc.aio.insecure_channel(short_retention_gateway.target) as channel:
        a = await register(channel)
        b = await register(channel)
        conversation = await direct(a, b)
        await b.connect()
        await a.send(conversation, "seen")
        seen, _ = await b.next("message_created")
        await b.disconnect()
        for i in range(3):
            await a.send(conversation, f"missed {i}")
        await asyncio.sleep(3)  # retention is 1 s: the missed events are gone from the stream

        first = await b.connect()
        assert first.WhichOneof("kind") == "resync_required"
        assert first.resync_required.oldest_available_sequence > seen + 1
        # Reloading from history finds everything; the stream goes on with new events only.
        page = await b.history.ListMessages(hpb.ListMessagesRequest(conversation_id=conversation), metadata=b.auth)
        assert [m.text for m in page.messages][:3] == ["missed 2", "missed 1", "missed 0"]
        fresh = await a.send(conversation, "after the resync")
        _, event = await b.next("message_created")
        assert event.message_created.message.message_id == fresh.message_id
        await b.disconnect()


async def test_receipts_go_sent_delivered_read_on_the_senders_devices(channel: grpc.aio.Channel) -> None:
    a1 = await register(channel)
    a2 = await another_device(a1, "a-phone")
    b = await register(channel)
    conversation = await direct(a1, b)
    await a2.connect()

    message = await a1.send(conversation, "did you get this?")
    assert message.delivery_state == hpb.DELIVERY_STATE_SENT

    await b.connect()  # from "new only": the first message stays undelivered, the next one is delivered
    another = await a1.send(conversation, "and this?")
    await b.next("message_created")
    _, delivered = await a2.next("delivery_receipt")
    assert delivered.delivery_receipt.delivered_sequence == another.sequence
    assert delivered.delivery_receipt.user_id == b.user_id

    await b.history.MarkRead(
        hpb.MarkReadRequest(conversation_id=conversation, sequence=another.sequence), metadata=b.auth
    )
    _, read = await a2.next("read_receipt")
    assert (read.read_receipt.user_id, read.read_receipt.read_sequence) == (b.user_id, another.sequence)

    page = await a1.history.ListMessages(hpb.ListMessagesRequest(conversation_id=conversation), metadata=a1.auth)
    assert {m.delivery_state for m in page.messages} == {hpb.DELIVERY_STATE_READ}
    for device in (a2, b):
        await device.disconnect()


async def test_the_same_send_twice_is_stored_and_delivered_once(channel: grpc.aio.Channel) -> None:
    a = await register(channel)
    b = await register(channel)
    conversation = await direct(a, b)
    await b.connect()
    first = await a.send(conversation, "only once", client_id="retry-me")
    second = await a.send(conversation, "only once", client_id="retry-me")
    assert first.message_id == second.message_id
    _, event = await b.next("message_created")
    assert event.message_created.message.message_id == first.message_id
    assert await b.quiet("message_created", 1.0) == []
    page = await b.history.ListMessages(hpb.ListMessagesRequest(conversation_id=conversation), metadata=b.auth)
    assert [m.text for m in page.messages] == ["only once"]
    await b.disconnect()


async def test_a_third_user_can_neither_read_nor_write_nor_listen_to_the_conversation(
    channel: grpc.aio.Channel,
) -> None:
    a = await register(channel)
    b = await register(channel)
    eve = await register(channel)
    conversation = await direct(a, b)
    await eve.connect()
    message = await a.send(conversation, "secret")
    denied = [
        eve.history.ListMessages(hpb.ListMessagesRequest(conversation_id=conversation), metadata=eve.auth),
        eve.history.SendMessage(
            hpb.SendMessageRequest(conversation_id=conversation, client_message_id="x", text="hi"), metadata=eve.auth
        ),
        eve.history.MarkRead(
            hpb.MarkReadRequest(conversation_id=conversation, sequence=message.sequence), metadata=eve.auth
        ),
    ]
    for call in denied:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await eve.quiet("message_created", 1.0) == []
    await eve.disconnect()


async def test_paging_a_thousand_messages_through_the_gateway_returns_each_once(channel: grpc.aio.Channel) -> None:
    from chatmesh.common.v1 import common_pb2

    a = await register(channel)
    b = await register(channel)
    conversation = await direct(a, b)
    for start in range(0, 1000, 100):
        await asyncio.gather(*(a.send(conversation, f"m{i}", client_id=f"k{i}") for i in range(start, start + 100)))
    late = asyncio.ensure_future(asyncio.gather(*(b.send(conversation, f"late {i}") for i in range(50))))
    for direction in (common_pb2.DIRECTION_BACKWARD, common_pb2.DIRECTION_FORWARD):
        seen: list[int] = []
        token = ""
        while True:
            page = await b.history.ListMessages(
                hpb.ListMessagesRequest(
                    conversation_id=conversation,
                    direction=direction,  # type: ignore[arg-type]
                    page=common_pb2.PageRequest(page_size=100, page_token=token),
                ),
                metadata=b.auth,
            )
            seen.extend(m.sequence for m in page.messages)
            token = page.page.next_page_token
            if not token:
                break
        assert len(seen) == len(set(seen))
        assert set(range(1, 1001)) <= set(seen)
        assert seen == sorted(seen, reverse=direction == common_pb2.DIRECTION_BACKWARD)
    await late


async def test_the_stream_consumer_of_a_gone_device_is_removed(channel: grpc.aio.Channel, nats_server: Nats) -> None:
    a = await register(channel)
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()

        async def consumers_of_a() -> int:
            infos = await js.consumers_info("CHAT")
            return sum(1 for c in infos if c.config.filter_subject == f"chat.user.{a.user_id}")

        await a.connect()
        assert await consumers_of_a() == 1
        await a.disconnect()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 90  # at the latest after the consumer's inactive threshold
        while await consumers_of_a() and loop.time() < deadline:
            await asyncio.sleep(0.5)
        assert await consumers_of_a() == 0
    finally:
        await nc.close()


async def test_typing_reaches_the_other_member_and_expires(channel: grpc.aio.Channel) -> None:
    a = await register(channel)
    b = await register(channel)
    conversation = await direct(a, b)
    await b.connect()
    await a.connect()
    presence = presence_pb2_grpc.PresenceServiceStub(channel)
    reply = await presence.SetTyping(
        presence_pb2.SetTypingRequest(conversation_id=conversation, typing=True), metadata=a.auth
    )
    _, event = await b.next("typing")
    assert (event.typing.user_id, event.typing.typing) == (a.user_id, True)
    assert event.typing.expires_in_ms == reply.expires_in_ms > 0
    assert await a.quiet("typing") == []  # not echoed to the typist
    await presence.SetTyping(presence_pb2.SetTypingRequest(conversation_id=conversation, typing=False), metadata=a.auth)
    _, stopped = await b.next("typing")
    assert stopped.typing.typing is False
    for device in (a, b):
        await device.disconnect()


async def test_presence_goes_online_then_offline_with_last_seen_when_heartbeats_stop(
    channel: grpc.aio.Channel,
) -> None:
    a = await register(channel)
    watcher = await register(channel)
    await direct(watcher, a)  # presence shows only to contacts
    presence = presence_pb2_grpc.PresenceServiceStub(channel)
    await watcher.connect(watch=(a.user_id,))

    await presence.Heartbeat(presence_pb2.HeartbeatRequest(active=True), metadata=a.auth)
    _, online = await watcher.next("presence_changed")
    assert online.presence_changed.presence.state == presence_pb2.PRESENCE_STATE_ONLINE

    _, offline = await watcher.next("presence_changed", timeout=15)  # device TTL is 2 s in this mesh
    gone = offline.presence_changed.presence
    assert gone.state == presence_pb2.PRESENCE_STATE_OFFLINE
    assert gone.HasField("last_seen_at")
    read = await presence.GetPresence(presence_pb2.GetPresenceRequest(user_ids=[a.user_id]), metadata=watcher.auth)
    assert read.presences[0].state == presence_pb2.PRESENCE_STATE_OFFLINE
    assert read.presences[0].last_seen_at == gone.last_seen_at
    await watcher.disconnect()
