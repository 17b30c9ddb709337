"""A send whose outcome was unknown, applied late by Cassandra's batchlog, never yields a false OK.

Found by the chaos suite: Cassandra SIGKILLed mid-batch answers the sender UNAVAILABLE; the
other member's next send takes that sequence; minutes later the batchlog replays the first
batch, so the sender's idempotency key points at the other member's message. The sender's
retry must store its own text (at the next sequence), not be told OK with someone else's.
The late replay is reproduced here by writing its key row straight into Cassandra.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from chatmesh.common.v1 import common_pb2
from chatmesh.history.v1 import history_pb2 as pb
from services.history.store import SCHEMA, client_key
from services.runtime.cql import CqlSession, CqlSettings
from tests.services.history.conftest import User

Factory = Callable[[], Awaitable[User]]


async def test_a_retry_whose_key_was_replayed_onto_another_message_stores_its_own_text(
    make_user: Factory, cql: CqlSettings
) -> None:
    ann, bob = await make_user(), await make_user()
    created = await ann.stub.CreateConversation(
        pb.CreateConversationRequest(kind=pb.CONVERSATION_KIND_DIRECT, peer_user_id=bob.user_id), metadata=ann.auth
    )
    conversation = created.conversation.conversation_id
    bobs = await bob.stub.SendMessage(
        pb.SendMessageRequest(conversation_id=conversation, client_message_id="b-1", text="bob took seq 1"),
        metadata=bob.auth,
    )
    # Ann's earlier attempt (key "a-1") was answered UNAVAILABLE; its batch lands late, on seq 1.
    session = await CqlSession.connect(cql, SCHEMA)
    try:
        await session.execute(
            "INSERT INTO message_keys (conversation_id, key, seq) VALUES (?, ?, ?)",
            (uuid.UUID(conversation), client_key(ann.user_id, "a-1"), bobs.message.sequence),
            prepare=True,
        )
    finally:
        await session.close()

    retried = await ann.stub.SendMessage(
        pb.SendMessageRequest(conversation_id=conversation, client_message_id="a-1", text="ann's own words"),
        metadata=ann.auth,
    )
    again = await ann.stub.SendMessage(
        pb.SendMessageRequest(conversation_id=conversation, client_message_id="a-1", text="ann's own words"),
        metadata=ann.auth,
    )

    assert (retried.message.text, retried.message.author_user_id) == ("ann's own words", ann.user_id)
    assert retried.message.sequence == bobs.message.sequence + 1
    assert again.message.message_id == retried.message.message_id  # stored once from here on
    page = await ann.stub.ListMessages(
        pb.ListMessagesRequest(
            conversation_id=conversation,
            direction=common_pb2.DIRECTION_FORWARD,
            page=common_pb2.PageRequest(page_size=10),
        ),
        metadata=ann.auth,
    )
    assert [(m.sequence, m.text) for m in page.messages] == [(1, "bob took seq 1"), (2, "ann's own words")]
