"""Connect relays presence only of the caller's contacts (session, history and presence in-process)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest

from chatmesh.events.v1 import events_pb2
from chatmesh.history.v1 import history_pb2 as hpb
from chatmesh.history.v1 import history_pb2_grpc
from chatmesh.presence.v1 import presence_pb2 as ppb
from chatmesh.presence.v1 import presence_pb2_grpc
from chatmesh.session.v1 import session_pb2 as pb
from chatmesh.session.v1 import session_pb2_grpc
from services.runtime.server import ServiceServer


async def _register(stub: session_pb2_grpc.SessionServiceStub) -> tuple[str, tuple[tuple[str, str]]]:
    reply = await stub.Register(
        pb.RegisterRequest(username=f"u{uuid.uuid4().hex[:12]}", password="correct horse battery", device_name="d")
    )
    return reply.user_id, (("authorization", f"Bearer {reply.tokens.access_token}"),)


@pytest.fixture
async def channels(
    session_service: ServiceServer, history_service: ServiceServer, presence_service: ServiceServer
) -> AsyncIterator[tuple[grpc.aio.Channel, grpc.aio.Channel, grpc.aio.Channel]]:
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{session_service.port}") as session,
        grpc.aio.insecure_channel(f"127.0.0.1:{history_service.port}") as history,
        grpc.aio.insecure_channel(f"127.0.0.1:{presence_service.port}") as presence,
    ):
        yield session, history, presence


async def test_a_connect_stream_gets_presence_of_contacts_only(
    channels: tuple[grpc.aio.Channel, grpc.aio.Channel, grpc.aio.Channel],
) -> None:
    session_ch, history_ch, presence_ch = channels
    session = session_pb2_grpc.SessionServiceStub(session_ch)
    history = history_pb2_grpc.HistoryServiceStub(history_ch)
    presence = presence_pb2_grpc.PresenceServiceStub(presence_ch)
    ann, ann_auth = await _register(session)
    bob, bob_auth = await _register(session)
    eve, eve_auth = await _register(session)
    await history.CreateConversation(
        hpb.CreateConversationRequest(kind=hpb.CONVERSATION_KIND_DIRECT, peer_user_id=bob), metadata=ann_auth
    )

    call = session.Connect(pb.ConnectRequest(watch_user_ids=[bob.upper(), eve]), metadata=ann_auth)
    received: asyncio.Queue[events_pb2.Event] = asyncio.Queue()

    async def read() -> None:
        async for reply in call:
            await received.put(reply.event)

    reader = asyncio.create_task(read())
    try:
        first = await asyncio.wait_for(received.get(), 10)
        assert first.WhichOneof("kind") == "keep_alive"  # live from here on
        await presence.Heartbeat(ppb.HeartbeatRequest(active=True), metadata=eve_auth)
        await presence.Heartbeat(ppb.HeartbeatRequest(active=True), metadata=bob_auth)
        seen: list[str] = []

        async def presence_events() -> None:
            while True:
                event = await received.get()
                if event.WhichOneof("kind") == "presence_changed":
                    seen.append(event.presence_changed.presence.user_id)

        collector = asyncio.create_task(presence_events())
        try:
            async with asyncio.timeout(10):
                while bob not in seen:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # eve went online first: had it been relayed, it would be here
        finally:
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector
        assert seen == [bob]
    finally:
        call.cancel()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
