"""Delivery reports folded per member, and sequences after a restart, on real CQL and JetStream."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import nats

from chatmesh.common.v1 import common_pb2
from chatmesh.events.v1 import events_pb2
from chatmesh.history.v1 import history_pb2 as pb
from mesh.deps.nats import Nats
from services.history.store import BUCKET_SIZE, SCHEMA, ConversationRecord, HistoryStore, MessageRecord, client_key
from services.runtime.cql import CqlSession, CqlSettings
from services.runtime.subjects import DELIVERED_SUBJECT, chat_subject
from tests.services.history.conftest import User

Factory = Callable[[], Awaitable[User]]


async def _direct(a: User, b: User) -> str:
    reply = await a.stub.CreateConversation(
        pb.CreateConversationRequest(kind=pb.CONVERSATION_KIND_DIRECT, peer_user_id=b.user_id), metadata=a.auth
    )
    return str(reply.conversation.conversation_id)


async def _send(user: User, conversation_id: str, text: str) -> pb.Message:
    request = pb.SendMessageRequest(conversation_id=conversation_id, client_message_id=uuid.uuid4().hex, text=text)
    return (await user.stub.SendMessage(request, metadata=user.auth)).message


async def _receipts(js: nats.js.JetStreamContext, user_id: str) -> list[tuple[str, int]]:
    """Every DeliveryReceipt in the user's stream so far: (who, up to which sequence)."""
    sub = await js.subscribe(chat_subject(user_id), ordered_consumer=True, deliver_policy="all")
    found = []
    try:
        while True:
            event = events_pb2.Event.FromString((await sub.next_msg(timeout=1)).data)
            if event.HasField("delivery_receipt"):
                found.append((event.delivery_receipt.user_id, event.delivery_receipt.delivered_sequence))
    except nats.errors.TimeoutError:
        return found
    finally:
        await sub.unsubscribe()


async def test_a_burst_of_delivery_reports_tells_the_sender_in_order_without_repeats(
    make_user: Factory, nats_server: Nats
) -> None:
    ann, bob, eve = await make_user(), await make_user(), await make_user()
    conversation = await _direct(ann, bob)
    sent = [await _send(ann, conversation, f"m{i}") for i in range(3)]
    nc = await nats.connect(nats_server.url)
    try:
        # Bob's devices report every message, some twice and out of order; eve is no member.
        for user, seq in [(bob, 1), (bob, 2), (bob, 1), (eve, 3), (bob, 3), (bob, 2), (bob, 3)]:
            report = events_pb2.DeliveryReceipt(
                conversation_id=conversation, delivered_sequence=seq, user_id=user.user_id
            )
            await nc.publish(DELIVERED_SUBJECT, report.SerializeToString())
        await nc.flush()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        receipts = await _receipts(nc.jetstream(), ann.user_id)
        while (bob.user_id, 3) not in receipts and loop.time() < deadline:
            await asyncio.sleep(0.2)
            receipts = await _receipts(nc.jetstream(), ann.user_id)
        sequences = [seq for who, seq in receipts]
        assert {who for who, _ in receipts} == {bob.user_id}
        assert sequences == sorted(set(sequences)) and sequences[-1] == 3
        assert await _receipts(nc.jetstream(), bob.user_id) == []  # only the other member is told
    finally:
        await nc.close()
    page = await ann.stub.ListMessages(
        pb.ListMessagesRequest(conversation_id=conversation, direction=common_pb2.DIRECTION_FORWARD), metadata=ann.auth
    )
    assert [m.message_id for m in page.messages] == [m.message_id for m in sent]
    assert {m.delivery_state for m in page.messages} == {pb.DELIVERY_STATE_DELIVERED}


async def test_the_last_sequence_is_found_after_a_restart_across_bucket_boundaries(cql: CqlSettings) -> None:
    session = await CqlSession.connect(cql, SCHEMA)
    try:
        store = HistoryStore(session)
        conversation_id, author = str(uuid.uuid4()), str(uuid.uuid4())
        now = datetime.now(UTC)
        await store.put_conversation(
            ConversationRecord(conversation_id, pb.CONVERSATION_KIND_ASSISTANT, (author,), "", now, 0)
        )
        for seq in (1, 2, BUCKET_SIZE - 1, BUCKET_SIZE, BUCKET_SIZE + 1, 2 * BUCKET_SIZE - 1, 2 * BUCKET_SIZE):
            message = MessageRecord(
                conversation_id,
                seq,
                str(uuid.uuid4()),
                author,
                pb.AUTHOR_KIND_USER,
                f"m{seq}",
                f"c{seq}",
                now,
                None,
                False,
            )
            await store.insert_message(message, client_key(author, f"c{seq}"), [(author, True)], b"preview")
            # What a restarted replica finds: the hint in the conversation row, walked forward.
            record = await store.conversation(conversation_id)
            assert record is not None
            assert record.last_seq_hint // BUCKET_SIZE == seq // BUCKET_SIZE  # moved once a bucket
            assert await store.last_seq(conversation_id, record.last_seq_hint) == seq
            assert await store.last_seq(conversation_id, 0) == seq  # a hint from long ago still works
        row = await store.user_conversation(author, conversation_id)
        assert row is not None and (row.last_seq, row.read_seq, row.last_message) == (
            2 * BUCKET_SIZE,
            2 * BUCKET_SIZE,
            b"preview",
        )
    finally:
        await session.close()


async def test_many_pointer_writes_in_batches_each_land(cql: CqlSettings) -> None:
    session = await CqlSession.connect(cql, SCHEMA)
    try:
        store = HistoryStore(session)
        user = str(uuid.uuid4())
        now = datetime.now(UTC)
        conversations = [str(uuid.uuid4()) for _ in range(23)]  # past two batches' worth of partitions
        for conversation_id in conversations:
            record = ConversationRecord(conversation_id, pb.CONVERSATION_KIND_ASSISTANT, (user,), "", now, 0)
            await store.put_conversation(record)
        await store.set_pointers("delivered_seq", [(user, c, i + 1) for i, c in enumerate(conversations)])
        message = MessageRecord(
            conversations[0], 7, str(uuid.uuid4()), user, pb.AUTHOR_KIND_USER, "m", "c7", now, None, False
        )
        await store.insert_message(message, client_key(user, "c7"), [(user, True)], b"preview")
        rows = {r.conversation_id: r for r in await store.user_conversations(user)}
        assert [rows[c].delivered_seq for c in conversations] == list(range(1, 24))
        assert (rows[conversations[0]].last_seq, rows[conversations[0]].read_seq) == (7, 7)
    finally:
        await session.close()
