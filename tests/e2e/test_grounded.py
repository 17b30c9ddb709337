"""A grounded reply end to end through Envoy, on the live mesh (`mesh up`: session, history,
inference on the bundled chat model, ingest with the default embedding model).

A user ingests a few made-up facts (nothing a model could know) from their laptop, asks the
assistant about one of them naming the collection, and watches the answer stream with its
citations; the stored reply carries them, and the user's phone, a second device logged in
to the same account, sees them on the message that its live event stream delivers and in
the conversation's page. Another user naming that collection is refused: NOT_FOUND, as if it
did not exist, and nothing is answered.
"""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from chatmesh.client import Client, Document
from chatmesh.common.v1 import common_pb2
from chatmesh.history.v1 import history_pb2 as hpb
from chatmesh.inference.v1 import inference_pb2 as pb
from tests.conftest_mesh import LiveMesh

PASSWORD = "correct horse battery"
GREEDY = pb.SamplingParams(temperature=0, max_tokens=16, seed=1)
FACTS = [
    Document("The Zorvath lighthouse was painted green in 1887 by its keeper, Ilse Marrow.", {"source": "light.md"}),
    Document("Bakers in Quellton make their rye bread with caraway seeds and smoked salt.", {"source": "bread.md"}),
    Document("The river Anselm floods every April, when the snow melts in the Varn mountains.", {"source": "river.md"}),
]


def username() -> str:
    """A username no other test of this run has taken."""
    return f"g{uuid.uuid4().hex[:16]}"


async def ask(client: Client, cid: str, question: str, collections: list[str]) -> list[pb.ReplyResponse]:
    await client.send_message(cid, question)
    request = pb.ReplyRequest(conversation_id=cid, sampling=GREEDY, collections=collections)
    return [chunk async for chunk in client.inference.Reply(request, timeout=120)]


@pytest.mark.e2e
async def test_a_grounded_reply_streams_with_citations_that_the_users_other_device_sees(live_mesh: LiveMesh) -> None:
    name = username()
    laptop = Client(live_mesh.gateway_target, deadline_s=60)
    phone = Client(live_mesh.gateway_target, deadline_s=60)
    async with laptop, phone:
        await laptop.register(name, PASSWORD, "laptop")
        await phone.login(name, PASSWORD, "phone")
        await laptop.ingest("facts", FACTS, create=True)
        conversation = await laptop.assistant_conversation()
        cid = conversation.conversation_id
        async with phone.events(idle_timeout_s=60) as events:
            await events.live()
            chunks = await ask(laptop, cid, "What colour was the Zorvath lighthouse painted?", ["facts"])
            kinds = [c.WhichOneof("chunk") for c in chunks]
            assert kinds[:2] == ["started", "citations"] and kinds[-1] == "finished" and "token" in kinds
            cited = chunks[1].citations.citations
            assert cited[0].source == "light.md" and "painted green" in cited[0].passage
            assert cited[0].collection == "facts" and cited[0].number == 1 and cited[0].point_id
            message_id = chunks[-1].finished.assistant_message_id
            assert message_id
            # The phone's live stream delivers the stored reply with its citations.
            async with asyncio.timeout(30):
                async for item in events:
                    created = item.event.message_created.message
                    if item.event.HasField("message_created") and created.message_id == message_id:
                        break
            assert [(c.point_id, c.source) for c in created.citations] == [(c.point_id, c.source) for c in cited]
        page = await phone.history.ListMessages(
            hpb.ListMessagesRequest(conversation_id=cid, direction=common_pb2.DIRECTION_BACKWARD)
        )
        stored = page.messages[0]
        assert stored.message_id == message_id and stored.author_kind == hpb.AUTHOR_KIND_ASSISTANT
        assert [c.passage for c in stored.citations] == [c.passage for c in cited]

        stranger = Client(live_mesh.gateway_target, deadline_s=60)
        async with stranger:
            await stranger.register(username(), PASSWORD, "laptop")
            theirs = (await stranger.assistant_conversation()).conversation_id
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await ask(stranger, theirs, "What colour was the Zorvath lighthouse painted?", ["facts"])
            assert refused.value.code() == grpc.StatusCode.NOT_FOUND
            assert "collections[0]" in (refused.value.details() or "")
            page = await stranger.history.ListMessages(hpb.ListMessagesRequest(conversation_id=theirs))
            assert [m.author_kind for m in page.messages] == [hpb.AUTHOR_KIND_USER]
