"""The assistant end to end: a browser's gRPC-web Reply through the real Envoy gateway, token by token.

Session, history and inference run in-process (inference on the bundled SmolLM2 model,
wired to the in-process history); a real Envoy routes each package to its server. The
browser speaks gRPC-web framed by hand; the user's phone holds a native gRPC Connect
stream through the same gateway and watches the reply appear.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from chatmesh.common.v1 import common_pb2
from chatmesh.history.v1 import history_pb2 as hpb
from chatmesh.inference.v1 import inference_pb2 as ipb
from chatmesh.session.v1 import session_pb2 as spb
from chatmesh.session.v1 import session_pb2_grpc
from services.runtime.server import ServiceServer
from tests.e2e.chat import PASSWORD, Device
from tests.e2e.conftest import Gateway, gateway_for
from tests.e2e.grpcweb import call

SESSION = "/chatmesh.session.v1.SessionService"
HISTORY = "/chatmesh.history.v1.HistoryService"
INFERENCE = "/chatmesh.inference.v1.InferenceService"
# Greedy and short: the same few tokens every run, quick on a CPU.
GREEDY = ipb.SamplingParams(temperature=0, max_tokens=8, seed=1)


@pytest.fixture
async def assistant_gateway(
    session_service: ServiceServer,
    history_service: ServiceServer,
    reply_inference_service: ServiceServer,
    tmp_path: Path,
) -> AsyncIterator[Gateway]:
    """Envoy in front of session, history and inference (inference reads and stores in that history)."""
    services = {"session": session_service, "history": history_service, "inference": reply_inference_service}
    async with gateway_for(services, tmp_path) as gw:
        yield gw


async def test_a_browser_streams_a_reply_token_by_token_that_is_stored_and_seen_on_the_users_phone(
    assistant_gateway: Gateway,
) -> None:
    gw = assistant_gateway
    username = f"a{uuid.uuid4().hex[:12]}"
    registered = (
        await call(
            gw.url, f"{SESSION}/Register",
            spb.RegisterRequest(username=username, password=PASSWORD, device_name="browser"),
        )
    ).parse(spb.RegisterResponse)  # fmt: skip
    token = registered.tokens.access_token
    async with grpc.aio.insecure_channel(gw.target) as channel:
        login = await session_pb2_grpc.SessionServiceStub(channel).Login(
            spb.LoginRequest(username=username, password=PASSWORD, device_name="phone")
        )
        phone = Device(channel, login.user_id, login.device_id, login.tokens.access_token)
        await phone.connect()  # live from here on
        try:
            conversation = (
                await call(
                    gw.url, f"{HISTORY}/CreateConversation",
                    hpb.CreateConversationRequest(kind=hpb.CONVERSATION_KIND_ASSISTANT), token,
                )
            ).parse(hpb.CreateConversationResponse).conversation  # fmt: skip
            cid = conversation.conversation_id
            asked = (
                await call(
                    gw.url, f"{HISTORY}/SendMessage",
                    hpb.SendMessageRequest(conversation_id=cid, client_message_id="q1", text="Say hello to me."),
                    token,
                )
            ).parse(hpb.SendMessageResponse)  # fmt: skip

            reply = await call(
                gw.url, f"{INFERENCE}/Reply", ipb.ReplyRequest(conversation_id=cid, sampling=GREEDY), token
            )

            assert (reply.http_status, reply.grpc_status) == (200, 0), reply.grpc_message
            chunks = [ipb.ReplyResponse.FromString(m) for m in reply.messages]
            kinds = [c.WhichOneof("chunk") for c in chunks]
            assert kinds[0] == "started" and kinds[-1] == "finished", kinds
            assert set(kinds[1:-1]) == {"token"} and len(kinds) - 2 > 1, kinds  # one data frame per token
            tokens = [c.token for c in chunks[1:-1]]
            assert [t.index for t in tokens] == list(range(len(tokens)))
            text = "".join(t.text for t in tokens)
            finished = chunks[-1].finished
            assert finished.reason in (ipb.FINISH_REASON_STOP, ipb.FINISH_REASON_LENGTH)
            assert finished.assistant_message_id
            assert finished.usage.completion_tokens == len(tokens)
            assert text.strip(), "the model said nothing"

            page = (
                await call(
                    gw.url, f"{HISTORY}/ListMessages",
                    hpb.ListMessagesRequest(conversation_id=cid, direction=common_pb2.DIRECTION_FORWARD), token,
                )
            ).parse(hpb.ListMessagesResponse)  # fmt: skip
            assert [m.message_id for m in page.messages] == [asked.message.message_id, finished.assistant_message_id]
            stored = page.messages[-1]
            assert stored.author_kind == hpb.AUTHOR_KIND_ASSISTANT
            # The service stores the reply without surrounding whitespace; this greedy reply has none.
            assert stored.text == text

            seen: list[str] = []
            while True:
                _, event = await phone.next("assistant_token", timeout=10)
                live = event.assistant_token
                assert live.conversation_id == cid and live.request_id == chunks[0].started.request_id
                if live.done:
                    break
                seen.append(live.text)
            assert "".join(seen) == text
        finally:
            await phone.disconnect()
