"""Users and devices talking to the mesh through the gateway, the way an SDK would."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field

import grpc

from chatmesh.events.v1 import events_pb2
from chatmesh.history.v1 import history_pb2 as hpb
from chatmesh.history.v1 import history_pb2_grpc
from chatmesh.session.v1 import session_pb2 as spb
from chatmesh.session.v1 import session_pb2_grpc

PASSWORD = "correct horse battery"


@dataclass
class Device:
    """One logged-in device: its stubs, and its Connect stream's events as they arrive."""

    channel: grpc.aio.Channel
    user_id: str
    device_id: str
    token: str
    events: asyncio.Queue[tuple[int, events_pb2.Event]] = field(default_factory=asyncio.Queue)
    last_sequence: int = 0
    _reader: asyncio.Task[None] | None = None
    _call: grpc.aio.UnaryStreamCall | None = None  # type: ignore[type-arg]

    @property
    def auth(self) -> tuple[tuple[str, str]]:
        """Call metadata with the access token."""
        return (("authorization", f"Bearer {self.token}"),)

    @property
    def history(self) -> history_pb2_grpc.HistoryServiceStub:
        """HistoryService through the gateway."""
        return history_pb2_grpc.HistoryServiceStub(self.channel)

    @property
    def session(self) -> session_pb2_grpc.SessionServiceStub:
        """SessionService through the gateway."""
        return session_pb2_grpc.SessionServiceStub(self.channel)

    async def connect(self, last_sequence: int | None = None, watch: tuple[str, ...] = ()) -> events_pb2.Event:
        """Open Connect (from ``last_sequence``, default: the last one seen) and return its first event."""
        await self.disconnect()
        self.events = asyncio.Queue()
        start = self.last_sequence if last_sequence is None else last_sequence
        call = self.session.Connect(
            spb.ConnectRequest(last_sequence=start, watch_user_ids=list(watch)), metadata=self.auth
        )
        self._call = call

        async def read() -> None:
            async for response in call:
                if response.sequence:
                    self.last_sequence = response.sequence
                await self.events.put((response.sequence, response.event))

        self._reader = asyncio.create_task(read())
        _, first = await asyncio.wait_for(self.events.get(), 10)
        return first

    async def disconnect(self) -> None:
        """Close the Connect stream (like a dropped network)."""
        if self._call is not None:
            self._call.cancel()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await self._reader
        self._call = self._reader = None

    async def next(self, kind: str, timeout: float = 10) -> tuple[int, events_pb2.Event]:
        """The next event of ``kind`` (an Event oneof name), skipping keep-alives and other kinds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            sequence, event = await asyncio.wait_for(self.events.get(), max(0.01, deadline - loop.time()))
            if event.WhichOneof("kind") == kind:
                return sequence, event

    async def collect(self, kind: str, count: int, timeout: float = 20) -> list[tuple[int, events_pb2.Event]]:
        """Exactly the next ``count`` events of ``kind``."""
        return [await self.next(kind, timeout) for _ in range(count)]

    async def quiet(self, kind: str, seconds: float = 0.5) -> list[events_pb2.Event]:
        """Events of ``kind`` arriving within ``seconds`` (expected: none)."""
        extra = []
        with contextlib.suppress(TimeoutError):
            while True:
                extra.append((await self.next(kind, seconds))[1])
        return extra

    async def send(self, conversation_id: str, text: str, client_id: str | None = None) -> hpb.Message:
        """SendMessage; returns the stored message."""
        reply = await self.history.SendMessage(
            hpb.SendMessageRequest(
                conversation_id=conversation_id, client_message_id=client_id or uuid.uuid4().hex, text=text
            ),
            metadata=self.auth,
        )
        return reply.message


async def register(channel: grpc.aio.Channel, device_name: str = "laptop") -> Device:
    """A new user logged in on one device."""
    stub = session_pb2_grpc.SessionServiceStub(channel)
    username = f"u{uuid.uuid4().hex[:12]}"
    reply = await stub.Register(spb.RegisterRequest(username=username, password=PASSWORD, device_name=device_name))
    device = Device(channel, reply.user_id, reply.device_id, reply.tokens.access_token)
    device.username = username  # type: ignore[attr-defined]
    return device


async def another_device(first: Device, device_name: str) -> Device:
    """The same user logged in on another device."""
    reply = await first.session.Login(
        spb.LoginRequest(username=first.username, password=PASSWORD, device_name=device_name)  # type: ignore[attr-defined]
    )
    device = Device(first.channel, reply.user_id, reply.device_id, reply.tokens.access_token)
    device.username = first.username  # type: ignore[attr-defined]
    return device


async def direct(a: Device, b: Device) -> str:
    """The direct conversation of two users."""
    reply = await a.history.CreateConversation(
        hpb.CreateConversationRequest(kind=hpb.CONVERSATION_KIND_DIRECT, peer_user_id=b.user_id), metadata=a.auth
    )
    return str(reply.conversation.conversation_id)
