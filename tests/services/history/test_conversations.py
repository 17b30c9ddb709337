"""Conversations and messages through the history service's gRPC API, on real CQL and JetStream."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import grpc
import nats
import pytest

from chatmesh.common.v1 import common_pb2
from chatmesh.events.v1 import events_pb2
from chatmesh.history.v1 import history_pb2 as pb
from chatmesh.history.v1 import history_pb2_grpc
from mesh.deps.nats import Nats
from services.history.server import build
from services.history.settings import HistorySettings
from services.runtime.bus import NatsSettings
from services.runtime.cql import CqlSettings
from services.runtime.server import ServiceServer
from tests.conftest import KeyPair
from tests.services.history.conftest import User

Factory = Callable[[], Awaitable[User]]


async def _direct(a: User, b: User) -> str:
    reply = await a.stub.CreateConversation(
        pb.CreateConversationRequest(kind=pb.CONVERSATION_KIND_DIRECT, peer_user_id=b.user_id), metadata=a.auth
    )
    return str(reply.conversation.conversation_id)


async def _send(user: User, conversation_id: str, text: str, client_id: str | None = None) -> pb.SendMessageResponse:
    request = pb.SendMessageRequest(
        conversation_id=conversation_id, client_message_id=client_id or uuid.uuid4().hex, text=text
    )
    return await user.stub.SendMessage(request, metadata=user.auth)


async def _page(
    user: User, conversation_id: str, direction: int, size: int, token: str = ""
) -> pb.ListMessagesResponse:
    request = pb.ListMessagesRequest(
        conversation_id=conversation_id,
        direction=direction,  # type: ignore[arg-type]
        page=common_pb2.PageRequest(page_size=size, page_token=token),
    )
    return await user.stub.ListMessages(request, metadata=user.auth)


async def test_a_direct_conversation_is_the_same_for_the_same_pair_either_way(make_user: Factory) -> None:
    ann, bob = await make_user(), await make_user()
    first = await ann.stub.CreateConversation(
        pb.CreateConversationRequest(kind=pb.CONVERSATION_KIND_DIRECT, peer_user_id=bob.user_id), metadata=ann.auth
    )
    second = await bob.stub.CreateConversation(
        pb.CreateConversationRequest(kind=pb.CONVERSATION_KIND_DIRECT, peer_user_id=ann.user_id), metadata=bob.auth
    )
    assert first.created and not second.created
    assert first.conversation.conversation_id == second.conversation.conversation_id
    assert sorted(m.user_id for m in first.conversation.members) == sorted([ann.user_id, bob.user_id])


async def test_messages_get_gapless_sequences_and_show_in_both_recent_lists(make_user: Factory) -> None:
    ann, bob = await make_user(), await make_user()
    conversation = await _direct(ann, bob)
    for i in range(3):
        sent = await _send(ann, conversation, f"hello {i}")
        assert sent.message.sequence == i + 1
    reply = await _send(bob, conversation, "hi ann")
    assert reply.message.sequence == 4

    ann_list = await ann.stub.ListConversations(pb.ListConversationsRequest(), metadata=ann.auth)
    bob_list = await bob.stub.ListConversations(pb.ListConversationsRequest(), metadata=bob.auth)
    (ann_view,) = ann_list.conversations
    (bob_view,) = bob_list.conversations
    assert ann_view.last_message.text == bob_view.last_message.text == "hi ann"
    assert ann_view.unread_count == 1  # bob's reply
    assert bob_view.unread_count == 0  # sending reads everything before


async def test_the_same_client_message_id_stores_and_publishes_one_message(
    make_user: Factory, nats_server: Nats
) -> None:
    ann, bob = await make_user(), await make_user()
    conversation = await _direct(ann, bob)
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        first = await _send(ann, conversation, "once", client_id="c-1")
        second = await _send(ann, conversation, "once", client_id="c-1")
        assert not first.duplicate and second.duplicate
        assert first.message.message_id == second.message.message_id
        page = await _page(bob, conversation, common_pb2.DIRECTION_FORWARD, 10)
        assert [m.text for m in page.messages] == ["once"]
        sub = await js.subscribe(f"chat.user.{bob.user_id}", ordered_consumer=True, deliver_policy="all")
        created = []
        try:
            while True:
                msg = await sub.next_msg(timeout=1)
                event = events_pb2.Event.FromString(msg.data)
                if event.HasField("message_created"):
                    created.append(event.message_created.message.message_id)
        except nats.errors.TimeoutError:
            pass
        assert created == [first.message.message_id]
    finally:
        await nc.close()


async def test_someone_outside_the_conversation_can_do_nothing_with_it(make_user: Factory) -> None:
    ann, bob, eve = await make_user(), await make_user(), await make_user()
    conversation = await _direct(ann, bob)
    sent = await _send(ann, conversation, "private")
    calls = [
        eve.stub.GetConversation(pb.GetConversationRequest(conversation_id=conversation), metadata=eve.auth),
        _send(eve, conversation, "let me in"),
        _page(eve, conversation, common_pb2.DIRECTION_BACKWARD, 10),
        eve.stub.MarkRead(pb.MarkReadRequest(conversation_id=conversation, sequence=1), metadata=eve.auth),
        eve.stub.EditMessage(
            pb.EditMessageRequest(conversation_id=conversation, message_id=sent.message.message_id, text="x"),
            metadata=eve.auth,
        ),
        eve.stub.DeleteMessage(
            pb.DeleteMessageRequest(conversation_id=conversation, message_id=sent.message.message_id),
            metadata=eve.auth,
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_read_pointers_only_move_forward_and_clear_unread(make_user: Factory) -> None:
    ann, bob = await make_user(), await make_user()
    conversation = await _direct(ann, bob)
    for i in range(5):
        await _send(ann, conversation, f"m{i}")
    marked = await bob.stub.MarkRead(pb.MarkReadRequest(conversation_id=conversation, sequence=3), metadata=bob.auth)
    assert (marked.read_sequence, marked.unread_count) == (3, 2)
    back = await bob.stub.MarkRead(pb.MarkReadRequest(conversation_id=conversation, sequence=1), metadata=bob.auth)
    assert back.read_sequence == 3
    page = await _page(ann, conversation, common_pb2.DIRECTION_FORWARD, 10)
    states = [m.delivery_state for m in page.messages]
    assert states == [pb.DELIVERY_STATE_READ] * 3 + [pb.DELIVERY_STATE_SENT] * 2


async def test_edits_and_deletes_are_for_the_author_and_leave_a_tombstone(make_user: Factory) -> None:
    ann, bob = await make_user(), await make_user()
    conversation = await _direct(ann, bob)
    sent = (await _send(ann, conversation, "typo")).message
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await bob.stub.EditMessage(
            pb.EditMessageRequest(conversation_id=conversation, message_id=sent.message_id, text="hacked"),
            metadata=bob.auth,
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    edited = await ann.stub.EditMessage(
        pb.EditMessageRequest(conversation_id=conversation, message_id=sent.message_id, text="fixed"),
        metadata=ann.auth,
    )
    assert edited.message.text == "fixed" and edited.message.HasField("edited_at")
    await ann.stub.DeleteMessage(
        pb.DeleteMessageRequest(conversation_id=conversation, message_id=sent.message_id), metadata=ann.auth
    )
    (shown,) = (await _page(bob, conversation, common_pb2.DIRECTION_BACKWARD, 10)).messages
    assert shown.deleted and shown.text == ""
    (view,) = (await bob.stub.ListConversations(pb.ListConversationsRequest(), metadata=bob.auth)).conversations
    assert view.last_message.deleted
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ann.stub.EditMessage(
            pb.EditMessageRequest(conversation_id=conversation, message_id=sent.message_id, text="again"),
            metadata=ann.auth,
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_paging_returns_every_message_once_both_ways_while_new_ones_arrive(make_user: Factory) -> None:
    ann, bob = await make_user(), await make_user()
    conversation = await _direct(ann, bob)
    for start in range(0, 1200, 100):  # 1,200 messages: two CQL buckets and a bit
        await asyncio.gather(*(_send(ann, conversation, f"m{i}", client_id=f"k{i}") for i in range(start, start + 100)))

    async def keep_sending() -> None:
        for i in range(100):
            await _send(bob, conversation, f"late {i}")

    for direction in (common_pb2.DIRECTION_BACKWARD, common_pb2.DIRECTION_FORWARD):
        sender = asyncio.create_task(keep_sending())
        seen: list[int] = []
        token = ""
        first = True
        while first or token:
            first = False
            page = await _page(ann, conversation, direction, 97, token)
            seen.extend(m.sequence for m in page.messages)
            token = page.page.next_page_token
            if direction == common_pb2.DIRECTION_BACKWARD and seen and seen[-1] == 1:
                break
        await sender
        assert len(seen) == len(set(seen)), "a message was returned twice"
        if direction == common_pb2.DIRECTION_BACKWARD:
            assert seen == sorted(seen, reverse=True)
            assert set(range(1, 1201)) <= set(seen)
        else:
            assert seen == sorted(seen)
            assert seen[:1200] == list(range(1, 1201))


async def test_a_forged_page_token_is_invalid_argument_naming_it(make_user: Factory) -> None:
    ann, bob = await make_user(), await make_user()
    conversation = await _direct(ann, bob)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _page(ann, conversation, common_pb2.DIRECTION_BACKWARD, 10, token="bm90IGEgdG9rZW4")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("page.page_token")


async def test_sending_faster_than_the_rate_limit_is_resource_exhausted_with_a_retry_hint(
    cql: CqlSettings, nats_server: Nats, token_keys: KeyPair, make_user: Factory, session_service: ServiceServer
) -> None:
    settings = HistorySettings(
        port=0, cql=cql, nats=NatsSettings(url=nats_server.url), token_public_key_file=token_keys.public,
        sends_per_second=0.5, send_burst=2, shutdown_drain_s=0, session_target=f"127.0.0.1:{session_service.port}",
    )  # fmt: skip
    app = await build(settings)
    async with app, grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        ann, bob = await make_user(), await make_user()
        ann.stub = bob.stub = history_pb2_grpc.HistoryServiceStub(channel)
        conversation = await _direct(ann, bob)
        await _send(ann, conversation, "one")
        await _send(ann, conversation, "two")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _send(ann, conversation, "three")
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert 0 < int(dict(err.value.trailing_metadata() or ())["retry-after-ms"]) <= 2000
        await _send(bob, conversation, "bob has his own budget")


async def test_assistant_replies_are_stored_once_per_request_and_only_in_assistant_conversations(
    make_user: Factory,
) -> None:
    ann, bob = await make_user(), await make_user()
    created = await ann.stub.CreateConversation(
        pb.CreateConversationRequest(kind=pb.CONVERSATION_KIND_ASSISTANT, model="smollm2"), metadata=ann.auth
    )
    assistant = created.conversation.conversation_id
    fetched = await ann.stub.GetConversation(pb.GetConversationRequest(conversation_id=assistant), metadata=ann.auth)
    assert created.conversation.model == fetched.conversation.model == "smollm2"
    assert [m.kind for m in created.conversation.members] == [pb.AUTHOR_KIND_USER, pb.AUTHOR_KIND_ASSISTANT]
    await _send(ann, assistant, "what is 2+2?")
    request = pb.AppendAssistantMessageRequest(conversation_id=assistant, request_id="gen-1", text="4")
    first = await ann.stub.AppendAssistantMessage(request, metadata=ann.as_inference)
    again = await ann.stub.AppendAssistantMessage(request, metadata=ann.as_inference)
    assert (first.duplicate, again.duplicate) == (False, True)
    assert first.message.author_kind == pb.AUTHOR_KIND_ASSISTANT and first.message.author_user_id == ""
    page = await _page(ann, assistant, common_pb2.DIRECTION_FORWARD, 10)
    assert [(m.author_kind, m.text) for m in page.messages] == [
        (pb.AUTHOR_KIND_USER, "what is 2+2?"),
        (pb.AUTHOR_KIND_ASSISTANT, "4"),
    ]

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await bob.stub.AppendAssistantMessage(request, metadata=bob.as_inference)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    direct = await _direct(ann, bob)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ann.stub.AppendAssistantMessage(
            pb.AppendAssistantMessageRequest(conversation_id=direct, request_id="gen-2", text="no"),
            metadata=ann.as_inference,
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_only_services_write_assistant_messages_a_users_own_token_is_refused(make_user: Factory) -> None:
    ann = await make_user()
    created = await ann.stub.CreateConversation(
        pb.CreateConversationRequest(kind=pb.CONVERSATION_KIND_ASSISTANT), metadata=ann.auth
    )
    conversation = created.conversation.conversation_id
    request = pb.AppendAssistantMessageRequest(conversation_id=conversation, request_id="forged", text="I agree")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ann.stub.AppendAssistantMessage(request, metadata=ann.auth)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "internal" in (err.value.details() or "")
    page = await _page(ann, conversation, common_pb2.DIRECTION_FORWARD, 10)
    assert list(page.messages) == []


async def test_the_longest_texts_allowed_store_and_read_back_whole(make_user: Factory) -> None:
    # Four bytes a character in UTF-8: 4,000 characters (a user's most) is 16 kB, 16,000 (an
    # assistant reply's most) is 64 kB, over Cassandra's default 50 KiB for a multi-partition batch.
    ann = await make_user()
    created = await ann.stub.CreateConversation(
        pb.CreateConversationRequest(kind=pb.CONVERSATION_KIND_ASSISTANT), metadata=ann.auth
    )
    conversation = created.conversation.conversation_id
    question = "\U0001f600" * 4000
    await _send(ann, conversation, question)
    reply = "\U0001f916" * 16_000
    request = pb.AppendAssistantMessageRequest(conversation_id=conversation, request_id="long", text=reply)
    stored = await ann.stub.AppendAssistantMessage(request, metadata=ann.as_inference)
    assert stored.message.text == reply
    page = await _page(ann, conversation, common_pb2.DIRECTION_FORWARD, 10)
    assert [m.text for m in page.messages] == [question, reply]
