"""The Python SDK's ``ask``: a grounded answer through the live mesh (`mesh up`: Envoy, inference
with all-MiniLM-L6-v2 for embedding and SmolLM2 answering, ingest searching as the caller,
history storing the reply), as an app would call it: documents in with ``ingest``, a question
whose answer is in one of them, the citations naming that document as they arrive and on the
stored reply, a follow-up answered from the collections the conversation remembers, another
user's collection refused, and the README's example as written."""

from __future__ import annotations

import textwrap
import uuid

import grpc
import pytest

from chatmesh.client import Citation, Client, Document, citations_of
from chatmesh.common.v1 import common_pb2
from chatmesh.history.v1 import history_pb2 as hpb
from chatmesh.inference.v1 import inference_pb2 as ipb
from tests.conftest_mesh import LiveMesh
from tests.sdk.test_python_ingest_forms import readme_block, signed_in

HANDBOOK = [
    Document("The office cat is called Biscuit; she sleeps on the second-floor printer.", {"source": "cat.md"}),
    Document("Deployments go out every Tuesday after the 10:00 stand-up.", {"source": "deploys.md"}),
    Document(
        "The espresso machine in the kitchen is descaled on the first Monday of each month.", {"source": "kitchen.md"}
    ),
    Document("Visitors sign in at the front desk and wear a green badge.", {"source": "visitors.md"}),
]


async def stored(client: Client, conversation_id: str) -> list[hpb.Message]:
    """The conversation's messages, oldest first."""
    page: hpb.ListMessagesResponse = await client.history.ListMessages(
        hpb.ListMessagesRequest(conversation_id=conversation_id, direction=common_pb2.DIRECTION_FORWARD)
    )
    return list(page.messages)


@pytest.mark.e2e
async def test_ask_cites_the_document_that_holds_the_answer_as_it_streams_and_on_the_stored_reply(
    live_mesh: LiveMesh,
) -> None:
    client = await signed_in(live_mesh)
    async with client:
        await client.ingest("handbook", HANDBOOK, create=True)
        (cat_hit, *_) = await client.search("handbook", HANDBOOK[0].text, limit=1)

        arrived: list[tuple[tuple[Citation, ...], str]] = []  # the citations, and the text streamed before them
        texts: list[str] = []
        answer = client.ask(
            "What is the office cat called?",
            collections=["handbook"],
            max_tokens=24,
            on_citations=lambda cited: arrived.append((cited, "".join(texts))),
        )
        async for text in answer:
            assert answer.citations, "the citations arrive before the first token"
            texts.append(text)

        assert answer.grounded and answer.finished is not None and answer.text == "".join(texts) != ""
        assert [(cited, before) for cited, before in arrived] == [(answer.citations, "")]  # once, before any text
        best = answer.citations[0]
        assert (best.number, best.collection, best.source, best.passage) == (1, "handbook", "cat.md", HANDBOOK[0].text)
        assert best.point_id == cat_hit.id and 0.3 <= best.score <= 1.0
        assert [c.number for c in answer.citations] == list(range(1, len(answer.citations) + 1))
        assert [c.score for c in answer.citations] == sorted((c.score for c in answer.citations), reverse=True)
        assert {c.source for c in answer.citations} <= {d.metadata["source"] for d in HANDBOOK}

        # History: a conversation remembering the collection, the question, then the reply with its citations.
        got: hpb.GetConversationResponse = await client.history.GetConversation(
            hpb.GetConversationRequest(conversation_id=answer.conversation_id)
        )
        assert got.conversation.kind == hpb.CONVERSATION_KIND_ASSISTANT
        assert list(got.conversation.collections) == ["handbook"]
        question, reply = await stored(client, answer.conversation_id)
        assert answer.question is not None and question.message_id == answer.question.message_id
        assert question.text == "What is the office cat called?" and not question.citations
        assert (question.author_kind, reply.author_kind) == (hpb.AUTHOR_KIND_USER, hpb.AUTHOR_KIND_ASSISTANT)
        assert reply.message_id == answer.finished.assistant_message_id and reply.text == answer.text
        assert citations_of(reply.citations) == answer.citations

        # A follow-up in the same conversation names no collection: it answers from the remembered one.
        follow = client.ask("And where does she sleep?", conversation_id=answer.conversation_id, max_tokens=16)
        await follow.collect()
        assert follow.conversation_id == answer.conversation_id and follow.grounded
        assert follow.citations[0].source == "cat.md"
        assert len(await stored(client, answer.conversation_id)) == 4

        # A question the handbook says nothing about: grounded, nothing cited, and the reply says so.
        unrelated = client.ask("How many moons does Jupiter have?", collections=["handbook"], max_tokens=16)
        said = await unrelated.collect()
        assert unrelated.grounded and unrelated.citations == () and "relevant" in said
        (_, empty) = await stored(client, unrelated.conversation_id)
        assert empty.text == said and not empty.citations


@pytest.mark.e2e
async def test_asking_on_another_users_collection_is_not_found_and_nothing_is_answered(live_mesh: LiveMesh) -> None:
    ann = await signed_in(live_mesh)
    bob = await signed_in(live_mesh)
    async with ann, bob:
        await ann.ingest("diary", ["Ann's bank PIN is written under the keyboard."], create=True)
        answer = bob.ask("Where is Ann's PIN written?", collections=["diary"], max_tokens=16)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await answer.collect()
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        assert "collections[0]" in (refused.value.details() or "")
        assert answer.text == "" and answer.citations == () and not answer.grounded
        # The question was sent; no reply was stored, and nothing of Ann's reached Bob.
        messages = await stored(bob, answer.conversation_id)
        assert [m.text for m in messages] == ["Where is Ann's PIN written?"]
        assert "keyboard" not in (refused.value.details() or "")


async def test_collections_given_as_one_string_are_refused_before_anything_is_sent() -> None:
    async with Client("127.0.0.1:9") as client:  # nothing listens there: nothing may be sent
        with pytest.raises(TypeError, match=r"collections=\['notes'\]"):
            client.ask("Which proxy is the gateway?", collections="notes")
        with pytest.raises(TypeError, match="collections"):
            client.reply(str(uuid.uuid4()), collections="notes")


def test_a_streamed_and_a_stored_citation_read_the_same() -> None:
    fields = {
        "number": 2,
        "collection": "notes",
        "point_id": "42",
        "source": "gateway.md",
        "offset": 3,
        "score": 0.5,
        "passage": "The gateway is Envoy.",
    }
    streamed = Citation.from_proto(ipb.Citation(**fields))  # type: ignore[arg-type]
    kept = Citation.from_proto(hpb.Citation(**fields))  # type: ignore[arg-type]
    assert streamed == kept == Citation(**fields)  # type: ignore[arg-type]


@pytest.mark.e2e
async def test_the_readmes_ask_example_runs_as_written(live_mesh: LiveMesh) -> None:
    namespace: dict[str, object] = {}
    source = "async def example(client, target):\n" + textwrap.indent(readme_block("### Ask with documents"), "    ")
    exec(compile(source, "README.md", "exec"), namespace)
    client = await signed_in(live_mesh)
    async with client:
        await namespace["example"](client, live_mesh.gateway_target)  # type: ignore[operator]
        listed: hpb.ListConversationsResponse = await client.history.ListConversations(hpb.ListConversationsRequest())
        (chat,) = listed.conversations
        messages = await stored(client, chat.conversation_id)
    user, assistant = hpb.AUTHOR_KIND_USER, hpb.AUTHOR_KIND_ASSISTANT
    assert [m.author_kind for m in messages] == [user, assistant, user, assistant]  # a question and its follow-up
    first_reply = messages[1]
    assert first_reply.citations and first_reply.citations[0].source == "cat.md"
