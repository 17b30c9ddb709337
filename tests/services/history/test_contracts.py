"""What the contract promised and main did not keep (issue 13, items 7 and 8), and FilterContacts."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Awaitable, Callable

import grpc
import pytest

from chatmesh.common.v1 import common_pb2
from chatmesh.history.v1 import history_pb2 as pb
from tests.services.history.conftest import User

Factory = Callable[[], Awaitable[User]]


def _token(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


async def _create(user: User, peer_user_id: str) -> pb.CreateConversationResponse:
    return await user.stub.CreateConversation(
        pb.CreateConversationRequest(kind=pb.CONVERSATION_KIND_DIRECT, peer_user_id=peer_user_id), metadata=user.auth
    )


async def _send(user: User, conversation_id: str, client_id: str, text: str) -> pb.SendMessageResponse:
    return await user.stub.SendMessage(
        pb.SendMessageRequest(conversation_id=conversation_id, client_message_id=client_id, text=text),
        metadata=user.auth,
    )


async def _conversations(user: User) -> list[pb.Conversation]:
    return list((await user.stub.ListConversations(pb.ListConversationsRequest(), metadata=user.auth)).conversations)


async def test_a_conversation_with_a_user_that_does_not_exist_is_not_found_and_not_created(
    make_user: Factory,
) -> None:
    ann = await make_user()
    nobody = str(uuid.uuid4())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _create(ann, nobody)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert (err.value.details() or "").startswith("peer_user_id")
    assert await _conversations(ann) == []


async def test_ones_own_id_in_upper_case_is_still_oneself(make_user: Factory) -> None:
    ann = await make_user()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _create(ann, ann.user_id.upper())
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # as the contract says of oneself
    assert (err.value.details() or "").startswith("peer_user_id")
    assert await _conversations(ann) == []


async def test_a_peer_id_in_upper_case_is_the_same_pair_and_the_same_conversation(make_user: Factory) -> None:
    ann, bob = await make_user(), await make_user()
    first = await _create(ann, bob.user_id)
    again = await _create(ann, bob.user_id.upper())
    back = await _create(bob, ann.user_id.upper())
    assert first.created and not again.created and not back.created
    conversation = first.conversation.conversation_id
    assert again.conversation.conversation_id == back.conversation.conversation_id == conversation
    assert {m.user_id for m in again.conversation.members} == {ann.user_id, bob.user_id}
    assert [c.conversation_id for c in await _conversations(ann)] == [conversation]


async def test_a_conversation_id_in_upper_case_names_the_same_conversation(make_user: Factory) -> None:
    ann, bob = await make_user(), await make_user()
    conversation = (await _create(ann, bob.user_id)).conversation.conversation_id
    one = await _send(ann, conversation, "k1", "lower")
    two = await _send(bob, conversation.upper(), "k2", "upper")
    assert (one.message.sequence, two.message.sequence) == (1, 2)
    assert two.message.conversation_id == conversation
    again = await _send(ann, conversation.upper(), "k1", "lower")  # the retry, spelled otherwise
    assert again.duplicate and again.message.message_id == one.message.message_id
    got = await bob.stub.GetConversation(
        pb.GetConversationRequest(conversation_id=conversation.upper()), metadata=bob.auth
    )
    assert got.conversation.conversation_id == conversation
    page = await ann.stub.ListMessages(
        pb.ListMessagesRequest(conversation_id=conversation.upper(), direction=common_pb2.DIRECTION_FORWARD),
        metadata=ann.auth,
    )
    assert [m.text for m in page.messages] == ["lower", "upper"]


async def test_the_other_member_reusing_a_client_message_id_sends_their_own_message(make_user: Factory) -> None:
    ann, bob = await make_user(), await make_user()
    conversation = (await _create(ann, bob.user_id)).conversation.conversation_id
    ann_sent = await _send(ann, conversation, "same-key", "from ann")
    bob_sent = await _send(bob, conversation, "same-key", "from bob")
    assert not bob_sent.duplicate
    assert bob_sent.message.author_user_id == bob.user_id and bob_sent.message.text == "from bob"
    assert bob_sent.message.message_id != ann_sent.message.message_id
    retry = await _send(bob, conversation, "same-key", "from bob")
    assert retry.duplicate and retry.message.message_id == bob_sent.message.message_id
    page = await ann.stub.ListMessages(
        pb.ListMessagesRequest(conversation_id=conversation, direction=common_pb2.DIRECTION_FORWARD),
        metadata=ann.auth,
    )
    assert [(m.author_user_id, m.text) for m in page.messages] == [(ann.user_id, "from ann"), (bob.user_id, "from bob")]


CRAFTED_MESSAGE_TOKENS = [
    _token("m1|f|²"),  # superscript two: str.isdigit() says yes, int() says no
    _token("m1|b|٣"),  # Arabic-Indic three: int() would take it
    _token("m1|f|1²"),
    _token("m1|f|" + "9" * 30),  # past a CQL bigint
    _token("m1|f|-1"),
    _token("m1|f| 1"),
    _token("m1|f|"),
    "²",  # not even base64
    "A" * 10_000,  # far longer than any token issued
    _token("m1|f|1") + "é",
]

CRAFTED_CONVERSATION_TOKENS = [
    _token(f"c1|nan|{uuid.uuid4()}"),
    _token(f"c1|inf|{uuid.uuid4()}"),
    _token(f"c1|١٢|{uuid.uuid4()}"),  # float() takes Arabic-Indic digits
    _token(f"c1|1_0|{uuid.uuid4()}"),
    _token("c1|1.5|not-an-id"),
    _token("c1|" + "9" * 400 + "|x"),
]


@pytest.mark.parametrize("token", CRAFTED_MESSAGE_TOKENS)
async def test_crafted_message_page_tokens_are_invalid_argument_naming_the_field(
    make_user: Factory, token: str
) -> None:
    ann, bob = await make_user(), await make_user()
    conversation = (await _create(ann, bob.user_id)).conversation.conversation_id
    await _send(ann, conversation, "k", "hello")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ann.stub.ListMessages(
            pb.ListMessagesRequest(conversation_id=conversation, page=common_pb2.PageRequest(page_token=token)),
            metadata=ann.auth,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("page.page_token")


@pytest.mark.parametrize("token", CRAFTED_CONVERSATION_TOKENS)
async def test_crafted_conversation_page_tokens_are_invalid_argument_naming_the_field(
    make_user: Factory, token: str
) -> None:
    ann = await make_user()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ann.stub.ListConversations(
            pb.ListConversationsRequest(page=common_pb2.PageRequest(page_token=token)), metadata=ann.auth
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("page.page_token")


async def test_issued_page_tokens_still_page_through_everything(make_user: Factory) -> None:
    ann, bob, cat = await make_user(), await make_user(), await make_user()
    for peer in (bob, cat):
        await _create(ann, peer.user_id)
    first = await ann.stub.ListConversations(
        pb.ListConversationsRequest(page=common_pb2.PageRequest(page_size=1)), metadata=ann.auth
    )
    second = await ann.stub.ListConversations(
        pb.ListConversationsRequest(page=common_pb2.PageRequest(page_size=1, page_token=first.page.next_page_token)),
        metadata=ann.auth,
    )
    assert len(first.conversations) == len(second.conversations) == 1
    assert first.conversations[0].conversation_id != second.conversations[0].conversation_id


async def test_filter_contacts_names_only_users_sharing_a_conversation(make_user: Factory) -> None:
    ann, bob, eve = await make_user(), await make_user(), await make_user()
    await _create(ann, bob.user_id)
    asked = [eve.user_id, bob.user_id.upper(), ann.user_id, str(uuid.uuid4())]
    reply = await ann.stub.FilterContacts(pb.FilterContactsRequest(user_ids=asked), metadata=ann.auth)
    assert list(reply.user_ids) == [bob.user_id]
    reply = await eve.stub.FilterContacts(
        pb.FilterContactsRequest(user_ids=[ann.user_id, bob.user_id]), metadata=eve.auth
    )
    assert list(reply.user_ids) == []
