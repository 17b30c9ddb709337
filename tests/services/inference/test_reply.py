"""Reply on a real history service: reads the conversation, streams, stores, shows other devices, reuses KV."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from chatmesh.common.v1 import common_pb2
from chatmesh.history.v1 import history_pb2 as hpb
from chatmesh.history.v1 import history_pb2_grpc
from chatmesh.inference.v1 import inference_pb2 as pb
from chatmesh.inference.v1 import inference_pb2_grpc
from chatmesh.session.v1 import session_pb2 as spb
from chatmesh.session.v1 import session_pb2_grpc
from services.runtime.server import ServiceServer
from services.runtime.tokens import Principal, TokenSigner

GREEDY = pb.SamplingParams(temperature=0, max_tokens=6, seed=1)


def auth(signer: TokenSigner, principal: Principal) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {signer.sign(principal).token}"),)


async def assistant_conversation(history: history_pb2_grpc.HistoryServiceStub, metadata: object) -> hpb.Conversation:
    request = hpb.CreateConversationRequest(kind=hpb.CONVERSATION_KIND_ASSISTANT)
    created: hpb.CreateConversationResponse = await history.CreateConversation(request, metadata=metadata)
    return created.conversation


async def reply(
    stub: inference_pb2_grpc.InferenceServiceStub, conversation_id: str, metadata: object
) -> list[pb.ReplyResponse]:
    request = pb.ReplyRequest(conversation_id=conversation_id, sampling=GREEDY)
    return [c async for c in stub.Reply(request, metadata=metadata)]  # type: ignore[arg-type]


async def test_reply_is_stored_and_streamed_to_the_users_other_device(
    reply_inference_service: ServiceServer, history_service: ServiceServer, session_service: ServiceServer,
    signer: TokenSigner,
) -> None:  # fmt: skip
    user = str(uuid.uuid4())
    phone, laptop = Principal(user, str(uuid.uuid4()), "s1"), Principal(user, str(uuid.uuid4()), "s2")
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{history_service.port}") as hch,
        grpc.aio.insecure_channel(f"127.0.0.1:{reply_inference_service.port}") as ich,
        grpc.aio.insecure_channel(f"127.0.0.1:{session_service.port}") as sch,
    ):
        history = history_pb2_grpc.HistoryServiceStub(hch)
        inference = inference_pb2_grpc.InferenceServiceStub(ich)
        md = auth(signer, phone)
        conversation = await assistant_conversation(history, md)
        cid = conversation.conversation_id
        await history.SendMessage(
            hpb.SendMessageRequest(conversation_id=cid, client_message_id="m1", text="Say hello."), metadata=md
        )
        connect = session_pb2_grpc.SessionServiceStub(sch).Connect(spb.ConnectRequest(), metadata=auth(signer, laptop))
        await connect.read()  # live from here on
        chunks = await reply(inference, cid, md)
        finished = chunks[-1].finished
        text = "".join(c.token.text for c in chunks if c.HasField("token"))
        assert finished.assistant_message_id and text.strip()
        page = await history.ListMessages(
            hpb.ListMessagesRequest(conversation_id=cid, direction=common_pb2.DIRECTION_FORWARD), metadata=md
        )
        stored = page.messages[-1]
        assert stored.message_id == finished.assistant_message_id
        assert stored.author_kind == hpb.AUTHOR_KIND_ASSISTANT and stored.text == text.strip()
        seen: list[str] = []
        async with asyncio.timeout(10):
            while True:
                event = (await connect.read()).event
                if event.HasField("assistant_token"):
                    if event.assistant_token.done:
                        break
                    seen.append(event.assistant_token.text)
        assert "".join(seen) == text
        connect.cancel()


async def test_turn_two_reuses_kv_state_and_an_edit_is_never_served_stale(
    reply_inference_service: ServiceServer, history_service: ServiceServer, signer: TokenSigner
) -> None:
    principal = Principal(str(uuid.uuid4()), str(uuid.uuid4()), "s")
    md = auth(signer, principal)
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{history_service.port}") as hch,
        grpc.aio.insecure_channel(f"127.0.0.1:{reply_inference_service.port}") as ich,
    ):
        history = history_pb2_grpc.HistoryServiceStub(hch)
        inference = inference_pb2_grpc.InferenceServiceStub(ich)
        cid = (await assistant_conversation(history, md)).conversation_id
        first = await history.SendMessage(
            hpb.SendMessageRequest(conversation_id=cid, client_message_id="a", text="My name is Ada."), metadata=md
        )
        turn1 = (await reply(inference, cid, md))[-1].finished.usage
        await history.SendMessage(
            hpb.SendMessageRequest(conversation_id=cid, client_message_id="b", text="What is my name?"), metadata=md
        )
        turn2 = (await reply(inference, cid, md))[-1].finished.usage
        assert turn2.cached_prompt_tokens > turn1.prompt_tokens // 2  # only the new turn was processed
        await history.EditMessage(
            hpb.EditMessageRequest(conversation_id=cid, message_id=first.message.message_id, text="My name is Bob."),
            metadata=md,
        )
        await history.SendMessage(
            hpb.SendMessageRequest(conversation_id=cid, client_message_id="c", text="Again?"), metadata=md
        )
        turn3 = (await reply(inference, cid, md))[-1].finished
        # The reuse stops where the edited message starts: nothing after it comes from old state.
        assert 0 < turn3.usage.cached_prompt_tokens < turn1.prompt_tokens
        assert turn3.assistant_message_id


async def test_after_an_edit_the_reply_is_what_the_edited_conversation_gets_from_scratch(
    reply_inference_service: ServiceServer, history_service: ServiceServer, signer: TokenSigner
) -> None:
    principal = Principal(str(uuid.uuid4()), str(uuid.uuid4()), "s")
    md = auth(signer, principal)
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{history_service.port}") as hch,
        grpc.aio.insecure_channel(f"127.0.0.1:{reply_inference_service.port}") as ich,
    ):
        history = history_pb2_grpc.HistoryServiceStub(hch)
        inference = inference_pb2_grpc.InferenceServiceStub(ich)
        cid = (await assistant_conversation(history, md)).conversation_id

        async def say(client_id: str, text: str) -> hpb.Message:
            request = hpb.SendMessageRequest(conversation_id=cid, client_message_id=client_id, text=text)
            return (await history.SendMessage(request, metadata=md)).message

        first = await say("a", "My name is Ada. I like green.")
        answer = "".join(c.token.text for c in await reply(inference, cid, md) if c.HasField("token")).strip()
        await say("b", "What colour do I like?")
        await reply(inference, cid, md)  # its KV state, and the tokenized pieces, now hold "Ada" and "green"
        edited = "My name is Bob. I like red."
        edit = hpb.EditMessageRequest(conversation_id=cid, message_id=first.message_id, text=edited)
        await history.EditMessage(edit, metadata=md)
        await say("c", "And my name?")
        chunks = await reply(inference, cid, md)
        text = "".join(c.token.text for c in chunks if c.HasField("token"))
        page = await history.ListMessages(
            hpb.ListMessagesRequest(conversation_id=cid, direction=common_pb2.DIRECTION_FORWARD), metadata=md
        )
        turns = [
            pb.ChatMessage(role=pb.ROLE_SYSTEM, content="You are a helpful assistant."),
            *(
                pb.ChatMessage(
                    role=pb.ROLE_ASSISTANT if m.author_kind == hpb.AUTHOR_KIND_ASSISTANT else pb.ROLE_USER,
                    content=m.text,
                )
                for m in page.messages[:-1]
            ),
        ]
        assert turns[1].content == edited and turns[2].content == answer
        cold = [
            c
            async for c in inference.Generate(
                pb.GenerateRequest(messages=turns, sampling=GREEDY),
                metadata=md,  # type: ignore[arg-type]
            )
        ]
        assert chunks[-1].finished.usage.prompt_tokens == cold[-1].finished.usage.prompt_tokens
        assert text == "".join(c.token.text for c in cold if c.HasField("token"))


async def test_only_inference_stores_assistant_messages_a_user_token_is_refused(
    reply_inference_service: ServiceServer, history_service: ServiceServer, signer: TokenSigner
) -> None:
    md = auth(signer, Principal(str(uuid.uuid4()), str(uuid.uuid4()), "s"))
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{history_service.port}") as hch,
        grpc.aio.insecure_channel(f"127.0.0.1:{reply_inference_service.port}") as ich,
    ):
        history = history_pb2_grpc.HistoryServiceStub(hch)
        cid = (await assistant_conversation(history, md)).conversation_id
        await history.SendMessage(
            hpb.SendMessageRequest(conversation_id=cid, client_message_id="m1", text="Say hello."), metadata=md
        )
        finished = (await reply(inference_pb2_grpc.InferenceServiceStub(ich), cid, md))[-1].finished
        assert finished.assistant_message_id  # stored with inference's service token, acting for the user
        forged = hpb.AppendAssistantMessageRequest(conversation_id=cid, request_id="forged", text="I am the assistant")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await history.AppendAssistantMessage(forged, metadata=md)
        assert info.value.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
