"""Revocation that reaches every service and every open stream, and streams bounded by their token.

Through the real gateway, with session, history and presence in-process on one NATS: the
session service writes ended logins to the REVOKED KV bucket, every service follows it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from chatmesh.client import Client
from chatmesh.history.v1 import history_pb2 as hpb
from chatmesh.history.v1 import history_pb2_grpc
from chatmesh.presence.v1 import presence_pb2 as ppb
from chatmesh.presence.v1 import presence_pb2_grpc
from chatmesh.session.v1 import session_pb2 as spb
from chatmesh.session.v1 import session_pb2_grpc
from mesh.deps.nats import Nats
from services.history.server import build as build_history
from services.history.settings import HistorySettings
from services.runtime.bus import NatsSettings
from services.runtime.cql import CqlSettings
from services.session.server import build as build_session
from services.session.settings import SessionSettings
from tests.conftest import KeyPair
from tests.e2e.chat import PASSWORD, another_device, direct, register
from tests.e2e.conftest import Gateway, gateway_for

TOKEN_TTL_S = 10


async def stream_end(device_call: grpc.aio.UnaryStreamCall, timeout_s: float) -> grpc.StatusCode:  # type: ignore[type-arg]
    """Read the stream until it ends; its status code."""

    async def drain() -> grpc.StatusCode:
        try:
            while await device_call.read() is not grpc.aio.EOF:
                pass
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    return await asyncio.wait_for(drain(), timeout_s)


async def refused_everywhere(channel: grpc.aio.Channel, token: str, timeout_s: float = 5.0) -> list[str]:
    """Wait until history and presence refuse ``token``; the services that still took it at the end."""
    auth = (("authorization", f"Bearer {token}"),)
    presence = presence_pb2_grpc.PresenceServiceStub(channel)
    history = history_pb2_grpc.HistoryServiceStub(channel)
    calls = {
        "history": lambda: history.ListConversations(hpb.ListConversationsRequest(), metadata=auth, timeout=5),
        "presence": lambda: presence.GetPresence(
            ppb.GetPresenceRequest(user_ids=[str(uuid.uuid4())]), metadata=auth, timeout=5
        ),
    }
    deadline = time.monotonic() + timeout_s
    still: list[str] = list(calls)
    while still and time.monotonic() < deadline:
        for name in list(still):
            try:
                await calls[name]()
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                    still.remove(name)
                    continue
                raise
        await asyncio.sleep(0.05)
    return still


async def test_a_revoked_devices_open_stream_ends_within_a_second_and_its_token_works_nowhere(
    chat_gateway: Gateway,
) -> None:
    async with grpc.aio.insecure_channel(chat_gateway.target) as channel:
        laptop = await register(channel, "laptop")
        phone = await another_device(laptop, "phone")
        call = phone.session.Connect(spb.ConnectRequest(), metadata=phone.auth)
        await asyncio.wait_for(call.read(), 10)  # the stream is open and live

        revoked_at = time.monotonic()
        await laptop.session.RevokeDevice(spb.RevokeDeviceRequest(device_id=phone.device_id), metadata=laptop.auth)
        code = await stream_end(call, timeout_s=1.0)
        ended_after = time.monotonic() - revoked_at

        assert code == grpc.StatusCode.UNAUTHENTICATED, f"the stream ended {code.name} after {ended_after:.3f}s"
        assert await refused_everywhere(channel, phone.token) == []
        # The laptop, another login of the same user, is untouched.
        await laptop.history.ListConversations(hpb.ListConversationsRequest(), metadata=laptop.auth)


async def test_logout_ends_that_devices_streams_and_token_at_once(chat_gateway: Gateway) -> None:
    async with grpc.aio.insecure_channel(chat_gateway.target) as channel:
        ann = await register(channel, "laptop")
        bob = await register(channel, "laptop")
        conversation = await direct(ann, bob)
        call = ann.session.Connect(spb.ConnectRequest(), metadata=ann.auth)
        await asyncio.wait_for(call.read(), 10)

        await ann.session.Logout(spb.LogoutRequest(), metadata=ann.auth)

        assert await stream_end(call, timeout_s=1.0) == grpc.StatusCode.UNAUTHENTICATED
        assert await refused_everywhere(channel, ann.token) == []
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ann.history.SendMessage(
                hpb.SendMessageRequest(conversation_id=conversation, text="after logout", client_message_id="x1"),
                metadata=ann.auth,
            )
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # Logging in again on the same device is a new login: its new token works.
        again = await ann.session.Login(
            spb.LoginRequest(
                username=ann.username,  # type: ignore[attr-defined]
                password=PASSWORD,
                device_name="laptop",
                device_id=ann.device_id,
            )
        )
        auth = (("authorization", f"Bearer {again.tokens.access_token}"),)
        await ann.history.ListConversations(hpb.ListConversationsRequest(), metadata=auth)


@pytest.fixture
async def short_token_gateway(
    cql: CqlSettings, nats_server: Nats, token_keys: KeyPair, tmp_path: Path
) -> AsyncIterator[Gateway]:
    """Session (access tokens live 10 s) and history behind the gateway."""
    nats_settings = NatsSettings(url=nats_server.url)
    session = await build_session(
        SessionSettings(
            port=0, cql=cql, nats=nats_settings, signing_key_file=token_keys.private,
            token_public_key_file=token_keys.public, argon2_time_cost=1, argon2_memory_kib=8192,
            access_token_ttl_s=TOKEN_TTL_S, shutdown_drain_s=0,
        )
    )  # fmt: skip
    history = await build_history(
        HistorySettings(
            port=0, cql=cql, nats=nats_settings, token_public_key_file=token_keys.public, shutdown_drain_s=0,
            session_target=f"127.0.0.1:{session.port}",
        )
    )  # fmt: skip
    async with history, session, gateway_for({"session": session, "history": history}, tmp_path) as gw:
        yield gw


async def test_a_stream_ends_when_its_token_expires_and_the_sdk_resumes_without_losing_an_event(
    short_token_gateway: Gateway,
) -> None:
    target = short_token_gateway.target
    async with Client(target) as ann, Client(target) as bob:
        await ann.register(f"ann{uuid.uuid4().hex[:12]}", PASSWORD, "laptop")
        bob_account = await bob.register(f"bob{uuid.uuid4().hex[:12]}", PASSWORD, "laptop")
        chat = await ann.direct_conversation(bob_account.user_id)
        first_token = bob.tokens.access_token if bob.tokens else ""

        # A raw Connect with bob's first token ends UNAUTHENTICATED at its expiry...
        async with grpc.aio.insecure_channel(target) as channel:
            raw = session_pb2_grpc.SessionServiceStub(channel).Connect(
                spb.ConnectRequest(), metadata=(("authorization", f"Bearer {first_token}"),)
            )
            await asyncio.wait_for(raw.read(), 10)
            assert await stream_end(raw, timeout_s=TOKEN_TTL_S + 10) == grpc.StatusCode.UNAUTHENTICATED

        # ...while the SDK's stream, opened with a token as short-lived, refreshes and resumes from
        # its last sequence: every message sent before, across and after two expiries arrives once.
        sent: list[int] = []
        received: list[int] = []
        async with bob.events() as events:

            async def read_all() -> None:
                async for item in events:
                    if item.event.HasField("message_created"):
                        received.append(item.event.message_created.message.sequence)

            reader = asyncio.create_task(read_all())
            for n in range(3 * TOKEN_TTL_S):
                message = await ann.send_message(chat.conversation_id, f"tick {n}")
                sent.append(message.sequence)
                await asyncio.sleep(0.8)
            async with asyncio.timeout(30):
                while len(received) < len(sent) and not reader.done():
                    await asyncio.sleep(0.1)
            reader.cancel()
        assert received == sent
        assert bob.tokens is not None and bob.tokens.access_token != first_token  # it did refresh
