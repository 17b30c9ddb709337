"""Three history replicas writing the same conversations: every conversation stays 1..n, each send once.

Three history services are built in-process on one keyspace (what several replicas behind
Envoy are); senders pick a replica at random for every call, and retry a failed call with
the same client id on another one, as a client SDK behind Envoy would. The writers that die
half-way are played by writing into Cassandra what they would have left behind.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
import nats
import pytest
from nats.js.api import DeliverPolicy

from chatmesh.common.v1 import common_pb2
from chatmesh.events.v1 import events_pb2
from chatmesh.history.v1 import history_pb2 as pb
from chatmesh.history.v1 import history_pb2_grpc
from mesh.deps.nats import Nats
from services.history.ids import uuid7
from services.history.server import build
from services.history.settings import HistorySettings
from services.history.store import SCHEMA, HistoryStore, MessageRecord, client_key
from services.runtime.bus import NatsSettings
from services.runtime.cql import CqlSession, CqlSettings
from services.runtime.server import ServiceServer
from services.runtime.tokens import Principal, TokenSigner, load_private_key
from tests.conftest import KeyPair
from tests.conftest_services import Accounts

REPLICAS = 3
CONVERSATIONS = 5
DEVICES = 2  # sender tasks per member: 5 conversations x 2 members x 2 = 20 concurrent senders
SENDS_PER_SENDER = 12


@dataclass
class Replicas:
    """Stubs of the history replicas, and a signer of users' tokens."""

    stubs: list[history_pb2_grpc.HistoryServiceStub]
    signer: TokenSigner
    accounts: Accounts

    async def user(self) -> tuple[str, tuple[tuple[str, str]]]:
        """A new account: its id and call metadata with its token."""
        principal = Principal(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()))
        await self.accounts.ensure(principal.user_id)
        return principal.user_id, (("authorization", f"Bearer {self.signer.sign(principal).token}"),)

    def any(self, rng: random.Random) -> history_pb2_grpc.HistoryServiceStub:
        """A replica picked at random (what a balancer does)."""
        return rng.choice(self.stubs)


@pytest.fixture
async def replicas(
    cql: CqlSettings,
    nats_server: Nats,
    token_keys: KeyPair,
    service_keys: KeyPair,
    session_service: ServiceServer,
    accounts: Accounts,
) -> AsyncIterator[Replicas]:
    """Three history services on the same keyspace and NATS, each on its own port."""
    async with AsyncExitStack() as stack:
        stubs = []
        for _ in range(REPLICAS):
            settings = HistorySettings(
                port=0,
                session_target=f"127.0.0.1:{session_service.port}",
                cql=cql,
                nats=NatsSettings(url=nats_server.url),
                token_public_key_file=token_keys.public,
                service_token_public_key_file=service_keys.public,
                sends_per_second=10_000,
                send_burst=10_000,
                shutdown_drain_s=0,
            )
            app = await stack.enter_async_context(await build(settings))
            channel = await stack.enter_async_context(grpc.aio.insecure_channel(f"127.0.0.1:{app.port}"))
            stubs.append(history_pb2_grpc.HistoryServiceStub(channel))
        signer = TokenSigner(load_private_key(token_keys.private), "chatmesh", 3600)
        yield Replicas(stubs, signer, accounts)


async def _direct(stub: history_pb2_grpc.HistoryServiceStub, auth: tuple[tuple[str, str]], peer: str) -> str:
    reply = await stub.CreateConversation(
        pb.CreateConversationRequest(kind=pb.CONVERSATION_KIND_DIRECT, peer_user_id=peer), metadata=auth
    )
    return str(reply.conversation.conversation_id)


async def _all_messages(
    stub: history_pb2_grpc.HistoryServiceStub, auth: tuple[tuple[str, str]], conversation_id: str
) -> list[pb.Message]:
    """Every message, paged forward 7 at a time (pages cross the replicas' knowledge of the newest)."""
    found: list[pb.Message] = []
    token = ""
    while True:
        page = await stub.ListMessages(
            pb.ListMessagesRequest(
                conversation_id=conversation_id,
                direction=common_pb2.DIRECTION_FORWARD,
                page=common_pb2.PageRequest(page_size=7, page_token=token),
            ),
            metadata=auth,
        )
        found.extend(page.messages)
        token = page.page.next_page_token
        if not token:
            return found


async def _send_until_acked(
    replicas: Replicas, rng: random.Random, auth: tuple[tuple[str, str]], request: pb.SendMessageRequest
) -> pb.SendMessageResponse:
    """Send; on UNAVAILABLE (the outcome unknown) send the same again, to a replica picked anew."""
    for _ in range(50):
        try:
            reply: pb.SendMessageResponse = await replicas.any(rng).SendMessage(request, metadata=auth, timeout=30)
            return reply
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            await asyncio.sleep(0.05)
    raise AssertionError(f"never acknowledged: {request.client_message_id}")


async def test_twenty_senders_on_three_replicas_leave_every_conversation_gapless_and_each_send_once(
    replicas: Replicas, nats_server: Nats
) -> None:
    rng = random.Random(14)
    pairs = [(await replicas.user(), await replicas.user()) for _ in range(CONVERSATIONS)]
    conversations = [await _direct(replicas.stubs[0], a[1], b[0]) for a, b in pairs]
    acked: dict[str, list[tuple[str, str, str]]] = {c: [] for c in conversations}  # (author, client id, message id)

    async def sender(conversation_id: str, user_id: str, auth: tuple[tuple[str, str]], device: int) -> None:
        own = random.Random(rng.random())
        for i in range(SENDS_PER_SENDER):
            client_id = f"{user_id[:8]}-d{device}-{i}"
            request = pb.SendMessageRequest(
                conversation_id=conversation_id, client_message_id=client_id, text=client_id
            )
            reply = await _send_until_acked(replicas, own, auth, request)
            acked[conversation_id].append((user_id, client_id, reply.message.message_id))

    senders = [
        sender(conversation, user_id, auth, device)
        for conversation, pair in zip(conversations, pairs, strict=True)
        for user_id, auth in pair
        for device in range(DEVICES)
    ]
    assert len(senders) == 20
    await asyncio.gather(*senders)

    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        for conversation, ((_, ann_auth), (bob, bob_auth)) in zip(conversations, pairs, strict=True):
            n = len(acked[conversation])
            assert n == 2 * DEVICES * SENDS_PER_SENDER
            for stub in replicas.stubs:  # every replica pages back the same conversation
                stored = await _all_messages(stub, ann_auth, conversation)
                assert [m.sequence for m in stored] == list(range(1, n + 1))  # no gap, no duplicate
                assert sorted((m.author_user_id, m.client_message_id, m.message_id) for m in stored) == sorted(
                    acked[conversation]
                )  # each acknowledged send once, with the id it was acknowledged with
            # The newest page (backward, no cursor) through each replica starts at the newest message.
            for stub in replicas.stubs:
                newest = await stub.ListMessages(
                    pb.ListMessagesRequest(
                        conversation_id=conversation,
                        direction=common_pb2.DIRECTION_BACKWARD,
                        page=common_pb2.PageRequest(page_size=3),
                    ),
                    metadata=bob_auth,
                )
                assert [m.sequence for m in newest.messages] == [n, n - 1, n - 2]
            # Both members' recent chats show the newest message, not one a slower replica wrote later.
            for auth in (ann_auth, bob_auth):
                listed = await replicas.stubs[1].ListConversations(pb.ListConversationsRequest(), metadata=auth)
                (row,) = listed.conversations
                assert row.last_message.sequence == n
            # Bob's devices get every message once, in order (his event stream on JetStream).
            sub = await js.subscribe(f"chat.user.{bob}", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
            seen: list[int] = []
            try:
                while len(seen) < n:
                    msg = await sub.next_msg(timeout=10)
                    event = events_pb2.Event.FromString(msg.data)
                    if event.WhichOneof("kind") == "message_created":
                        seen.append(event.message_created.message.sequence)
                with pytest.raises(nats.errors.TimeoutError):
                    while True:  # nothing more than n
                        msg = await sub.next_msg(timeout=1)
                        if events_pb2.Event.FromString(msg.data).WhichOneof("kind") == "message_created":
                            seen.append(-1)
                            break
            finally:
                await sub.unsubscribe()
            assert sorted(seen) == list(range(1, n + 1))
    finally:
        await nc.close()


async def test_a_send_retried_on_another_replica_is_stored_once(replicas: Replicas) -> None:
    (_, ann_auth), (bob, _) = await replicas.user(), await replicas.user()
    a, b, c = replicas.stubs
    conversation = await _direct(a, ann_auth, bob)
    request = pb.SendMessageRequest(conversation_id=conversation, client_message_id="once", text="hello")
    first = await a.SendMessage(request, metadata=ann_auth)
    # The answer was lost on the way: the client sends the same again, and the balancer picks B.
    again = await b.SendMessage(request, metadata=ann_auth)
    assert (first.duplicate, again.duplicate) == (False, True)
    assert again.message.message_id == first.message.message_id
    # The same request at once on two replicas (a retry while the first attempt still runs): one message.
    for i in range(10):
        twin = pb.SendMessageRequest(conversation_id=conversation, client_message_id=f"twin-{i}", text=f"t{i}")
        other = pb.SendMessageRequest(conversation_id=conversation, client_message_id=f"other-{i}", text=f"o{i}")
        replies = await asyncio.gather(
            b.SendMessage(twin, metadata=ann_auth),
            c.SendMessage(twin, metadata=ann_auth),
            a.SendMessage(other, metadata=ann_auth),
        )
        assert replies[0].message.message_id == replies[1].message.message_id
        assert sorted((replies[0].duplicate, replies[1].duplicate)) == [False, True]
    stored = await _all_messages(c, ann_auth, conversation)
    assert [m.sequence for m in stored] == list(range(1, 22))
    assert sorted(m.client_message_id for m in stored) == sorted(
        ["once", *(f"twin-{i}" for i in range(10)), *(f"other-{i}" for i in range(10))]
    )


async def test_a_writer_that_died_at_any_point_of_a_send_leaves_no_gap_and_its_retry_no_duplicate(
    replicas: Replicas, cql: CqlSettings
) -> None:
    (ann, ann_auth), (bob, bob_auth) = await replicas.user(), await replicas.user()
    a, b, _ = replicas.stubs
    conversation = await _direct(a, ann_auth, bob)
    await a.SendMessage(
        pb.SendMessageRequest(conversation_id=conversation, client_message_id="b-1", text="one"), metadata=bob_auth
    )
    session = await CqlSession.connect(cql, SCHEMA)
    try:
        store = HistoryStore(session)
        # A replica died after writing its tentative sequence (2) for "k-2", before claiming it.
        await store.put_key(conversation, client_key(ann, "k-2"), 2)
        # Another died after claiming 3 for "k-3" (the message is durable), before linking it.
        await store.put_key(conversation, client_key(ann, "k-3"), 3)
        died = MessageRecord(
            conversation, 3, uuid7(), ann, pb.AUTHOR_KIND_USER, "three", "k-3", datetime.now(UTC), None, False
        )
        # (3 can only be claimed once 2 is: Bob's send took 2 meanwhile.)
        await a.SendMessage(
            pb.SendMessageRequest(conversation_id=conversation, client_message_id="b-2", text="two"),
            metadata=bob_auth,
        )
        assert await store.claim_message(died) is None
    finally:
        await session.close()

    retried_3 = await b.SendMessage(
        pb.SendMessageRequest(conversation_id=conversation, client_message_id="k-3", text="three"), metadata=ann_auth
    )
    assert (retried_3.message.sequence, retried_3.message.message_id, retried_3.duplicate) == (
        3,
        died.message_id,
        True,
    )
    retried_2 = await b.SendMessage(
        pb.SendMessageRequest(conversation_id=conversation, client_message_id="k-2", text="late"), metadata=ann_auth
    )
    assert (retried_2.message.sequence, retried_2.duplicate) == (4, False)  # its 2 went to Bob: stored anew
    stored = await _all_messages(a, bob_auth, conversation)
    assert [(m.sequence, m.client_message_id) for m in stored] == [(1, "b-1"), (2, "b-2"), (3, "k-3"), (4, "k-2")]
    # The message the dead writer never linked is found by id (edits), and recent chats moved past it.
    edited = await a.EditMessage(
        pb.EditMessageRequest(conversation_id=conversation, message_id=died.message_id, text="three, edited"),
        metadata=ann_auth,
    )
    assert edited.message.text == "three, edited"
    listed = await a.ListConversations(pb.ListConversationsRequest(), metadata=bob_auth)
    assert [(c.last_message.sequence, c.last_message.text) for c in listed.conversations] == [(4, "late")]

    # One more died after writing its tentative sequence, and that sequence (5) is still free: the
    # retry takes it (on a replica that never wrote here), no later one.
    session = await CqlSession.connect(cql, SCHEMA)
    try:
        await HistoryStore(session).put_key(conversation, client_key(ann, "k-5"), 5)
    finally:
        await session.close()
    retried_5 = await replicas.stubs[2].SendMessage(
        pb.SendMessageRequest(conversation_id=conversation, client_message_id="k-5", text="five"), metadata=ann_auth
    )
    assert (retried_5.message.sequence, retried_5.duplicate) == (5, False)
    assert [m.sequence for m in await _all_messages(b, ann_auth, conversation)] == [1, 2, 3, 4, 5]
