"""Grounded replies on real servers: history (Cassandra, NATS), ingest (embedded store) and inference.

One inference process answers the conversation and embeds for ingest, as in the mesh: ingest
is started first with inference's port picked up front, then inference with ingest's. The
collection holds a few made-up facts (nothing the model could know), so a citation names the
passage that contains the fact or the test fails. Grounding runs with its defaults: the
default embedding model (all-MiniLM-L6-v2) and its score threshold (0.3). Measured with it:
a question about a fact scores 0.72 to 0.78 on its passage and below 0.13 on the others;
"Why?" alone scores at most 0.07 on any (so only the follow-up query finds its passage), and
the football question at most 0.09 (nothing relevant).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf.struct_pb2 import Struct

from chatmesh.common.v1 import common_pb2
from chatmesh.history.v1 import history_pb2 as hpb
from chatmesh.history.v1 import history_pb2_grpc
from chatmesh.inference.v1 import inference_pb2 as pb
from chatmesh.inference.v1 import inference_pb2_grpc
from chatmesh.ingest.v1 import ingest_pb2 as ipb
from mesh.deps.base import free_port
from mesh.deps.nats import Nats
from services.inference.server import build
from services.runtime.server import ServiceServer
from services.runtime.tokens import Principal, TokenSigner
from tests.conftest import KeyPair
from tests.conftest_inference import inference_settings
from tests.conftest_ingest import IngestHandle, MeshKeys, ingest_settings, running_ingest

GREEDY = pb.SamplingParams(temperature=0, max_tokens=8, seed=1)
FACTS = [
    ("lighthouses.md", "The Zorvath lighthouse was painted green in 1887 by its keeper, Ilse Marrow."),
    ("bread.txt", "Bakers in Quellton make their rye bread with caraway seeds and a pinch of smoked salt."),
    ("rivers.txt", "The river Anselm floods every April, when the snow melts in the Varn mountains."),
    ("clubs.txt", "The chess club of Tarrow meets on Thursdays in the basement of the old library."),
]


@dataclass
class Stack:
    """History, ingest and inference of one test, and stubs to them."""

    history: history_pb2_grpc.HistoryServiceStub
    inference: inference_pb2_grpc.InferenceServiceStub
    ingest: IngestHandle
    embed_model: str


@asynccontextmanager
async def grounded_stack(
    nats: Nats,
    token_keys: KeyPair,
    service_keys: KeyPair,
    history: ServiceServer,
    root: Path,
) -> AsyncIterator[Stack]:
    """Ingest, then inference (default grounding: MiniLM's threshold), wired to each other and to ``history``."""
    port = free_port()
    keys = MeshKeys(token_keys, service_keys)
    async with running_ingest(ingest_settings(nats, keys, root, port)) as ingest:
        settings = inference_settings(
            nats, token_keys, port=port, history_target=f"127.0.0.1:{history.port}", ingest_target=ingest.target,
            queue_size=8, n_ctx=2048, service_token_private_key_file=service_keys.private,
            service_token_public_key_file=service_keys.public,
        )  # fmt: skip
        app = await build(settings)
        async with (
            app,
            grpc.aio.insecure_channel(f"127.0.0.1:{history.port}") as hch,
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ich,
        ):
            stub = inference_pb2_grpc.InferenceServiceStub(ich)
            models = (await stub.ListModels(pb.ListModelsRequest(), metadata=_service_md(keys))).models
            embed_model = next(m.name for m in models if m.default_for_embed)
            yield Stack(history_pb2_grpc.HistoryServiceStub(hch), stub, ingest, embed_model)


def _service_md(keys: MeshKeys) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {keys.user_token(str(uuid.uuid4()))}"),)


def auth(signer: TokenSigner, principal: Principal) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {signer.sign(principal).token}"),)


async def fill_collection(stack: Stack, md: object, name: str = "facts") -> None:
    """The user's collection ``name`` with one document per fact (its file as the payload's source)."""
    models = (await stack.inference.ListModels(pb.ListModelsRequest(), metadata=md)).models  # type: ignore[arg-type]
    dims = next(m.embedding_dimensions for m in models if m.name == stack.embed_model)
    await stack.ingest.stub.CreateCollection(
        ipb.CreateCollectionRequest(
            name=name, vector_size=dims, distance=ipb.DISTANCE_COSINE, embedding_model=stack.embed_model
        ),
        metadata=md,
    )
    documents = []
    for source, text in FACTS:
        meta = Struct()
        meta.update({"source": source})
        documents.append(ipb.Document(text=text, metadata=meta))
    await stack.ingest.stub.Upsert(ipb.UpsertRequest(collection=name, documents=documents), metadata=md)


async def ask(
    stack: Stack, md: object, cid: str, text: str, collections: tuple[str, ...] = ("facts",)
) -> list[pb.ReplyResponse]:
    await stack.history.SendMessage(
        hpb.SendMessageRequest(conversation_id=cid, client_message_id=str(uuid.uuid4()), text=text), metadata=md
    )
    request = pb.ReplyRequest(conversation_id=cid, sampling=GREEDY, collections=collections)
    return [c async for c in stack.inference.Reply(request, metadata=md)]  # type: ignore[arg-type]


async def new_conversation(stack: Stack, md: object, collections: tuple[str, ...] = ()) -> str:
    request = hpb.CreateConversationRequest(kind=hpb.CONVERSATION_KIND_ASSISTANT, collections=collections)
    return str((await stack.history.CreateConversation(request, metadata=md)).conversation.conversation_id)


async def test_a_grounded_reply_cites_the_passage_with_the_fact_and_the_stored_message_keeps_it(
    nats_server: Nats, token_keys: KeyPair, service_keys: KeyPair, history_service: ServiceServer,
    signer: TokenSigner, tmp_path: Path,
) -> None:  # fmt: skip
    async with grounded_stack(nats_server, token_keys, service_keys, history_service, tmp_path) as stack:
        user = str(uuid.uuid4())
        phone, laptop = Principal(user, str(uuid.uuid4()), "s1"), Principal(user, str(uuid.uuid4()), "s2")
        md = auth(signer, phone)
        await fill_collection(stack, md)
        cid = await new_conversation(stack, md)
        chunks = await ask(stack, md, cid, "What colour was the Zorvath lighthouse painted?")
        kinds = [c.WhichOneof("chunk") for c in chunks]
        assert kinds[0] == "started" and kinds[1] == "citations" and kinds[-1] == "finished"
        assert kinds.count("citations") == 1 and "token" in kinds
        cited = chunks[1].citations
        assert list(cited.collections) == ["facts"]
        top = cited.citations[0]
        assert top.number == 1 and top.collection == "facts" and top.source == "lighthouses.md"
        assert "painted green" in top.passage and top.point_id
        assert [c.score for c in cited.citations] == sorted((c.score for c in cited.citations), reverse=True)
        finished = chunks[-1].finished
        assert finished.assistant_message_id
        # The user's laptop reads the stored reply with its citations.
        page = await stack.history.ListMessages(
            hpb.ListMessagesRequest(conversation_id=cid, direction=common_pb2.DIRECTION_FORWARD),
            metadata=auth(signer, laptop),
        )
        stored = page.messages[-1]
        assert stored.message_id == finished.assistant_message_id
        assert [(c.number, c.point_id, c.source, c.passage) for c in stored.citations] == [
            (c.number, c.point_id, c.source, c.passage) for c in cited.citations
        ]


async def test_a_follow_up_searches_with_the_turn_before_and_the_cached_prefix_survives_the_passages(
    nats_server: Nats, token_keys: KeyPair, service_keys: KeyPair, history_service: ServiceServer,
    signer: TokenSigner, tmp_path: Path,
) -> None:  # fmt: skip
    async with grounded_stack(nats_server, token_keys, service_keys, history_service, tmp_path) as stack:
        md = auth(signer, Principal(str(uuid.uuid4()), str(uuid.uuid4()), "s"))
        await fill_collection(stack, md)
        # The conversation remembers its collections: the Replies below name none.
        cid = await new_conversation(stack, md, ("facts",))
        turn1 = await ask(stack, md, cid, "When does the river Anselm flood?", collections=())
        assert turn1[1].citations.citations[0].source == "rivers.txt"
        turn2 = await ask(stack, md, cid, "Why?", collections=())  # alone, "Why?" matches nothing in particular
        assert turn2[1].citations.citations[0].source == "rivers.txt"
        turn3 = await ask(stack, md, cid, "On which day does the chess club of Tarrow meet?", collections=())
        assert turn3[1].citations.citations[0].source == "clubs.txt"
        u1, u2, u3 = (t[-1].finished.usage for t in (turn1, turn2, turn3))
        # Passages sit after the history: each turn reuses everything before the previous question, so
        # the cached prefix grows turn by turn and what is evaluated stays about one fresh grounded turn.
        assert 0 < u2.cached_prompt_tokens < u3.cached_prompt_tokens
        assert u3.prompt_tokens - u3.cached_prompt_tokens < u1.prompt_tokens + 60


async def test_another_users_collection_is_refused(
    nats_server: Nats, token_keys: KeyPair, service_keys: KeyPair, history_service: ServiceServer,
    signer: TokenSigner, tmp_path: Path,
) -> None:  # fmt: skip
    async with grounded_stack(nats_server, token_keys, service_keys, history_service, tmp_path) as stack:
        ann = auth(signer, Principal(str(uuid.uuid4()), str(uuid.uuid4()), "a"))
        bob = auth(signer, Principal(str(uuid.uuid4()), str(uuid.uuid4()), "b"))
        await fill_collection(stack, ann)
        cid = await new_conversation(stack, bob)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ask(stack, bob, cid, "What colour was the Zorvath lighthouse painted?")
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        assert "collections[0]" in (refused.value.details() or "")
        page = await stack.history.ListMessages(
            hpb.ListMessagesRequest(conversation_id=cid, direction=common_pb2.DIRECTION_BACKWARD), metadata=bob
        )
        assert [m.author_kind for m in page.messages] == [hpb.AUTHOR_KIND_USER]  # nothing was answered
        bad = pb.ReplyRequest(conversation_id=cid, collections=["Not A Name"])
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            [c async for c in stack.inference.Reply(bad, metadata=bob)]  # type: ignore[arg-type]
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "collections" in (invalid.value.details() or "")


async def test_nothing_above_the_threshold_says_so_instead_of_inventing(
    nats_server: Nats, token_keys: KeyPair, service_keys: KeyPair, history_service: ServiceServer,
    signer: TokenSigner, tmp_path: Path,
) -> None:  # fmt: skip
    async with grounded_stack(nats_server, token_keys, service_keys, history_service, tmp_path) as stack:
        md = auth(signer, Principal(str(uuid.uuid4()), str(uuid.uuid4()), "s"))
        await fill_collection(stack, md)
        cid = await new_conversation(stack, md)
        chunks = await ask(stack, md, cid, "Who won the football world cup in 1966?")
        assert chunks[1].WhichOneof("chunk") == "citations" and not chunks[1].citations.citations
        text = "".join(c.token.text for c in chunks if c.HasField("token"))
        assert text.startswith("I found nothing relevant") and "facts" in text
        page = await stack.history.ListMessages(
            hpb.ListMessagesRequest(conversation_id=cid, direction=common_pb2.DIRECTION_BACKWARD), metadata=md
        )
        assert page.messages[0].text == text and not page.messages[0].citations
