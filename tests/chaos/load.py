"""Steady load through the gateway, the way clients behave, and the books it keeps.

Two users, two devices each, every device with a Connect stream open that resumes from its
last sequence whenever the stream breaks; each user sends messages to the other in a loop
(retrying a failed send with the same ``client_message_id`` until it is acknowledged); one
client submits to a form in a loop (retrying with the same idempotency key). Every answer is
recorded per phase (one phase per fault), so the report can say, per fault, how many
operations were acknowledged and how many of those were found stored and delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import grpc

from chatmesh.common.v1 import common_pb2
from chatmesh.forms.v1 import forms_pb2 as fpb
from chatmesh.forms.v1 import forms_pb2_grpc
from chatmesh.history.v1 import history_pb2 as hpb
from chatmesh.session.v1 import session_pb2 as spb
from tests.e2e.chat import Device, another_device, direct, register

#: A call that gets no answer in this long counts as failed (and is retried).
CALL_TIMEOUT_S = 20.0
#: Pause between two operations of one sender: steady load, not a benchmark.
PACE_S = 0.05
#: Pause before retrying a failed call or reopening a broken stream.
RETRY_S = 0.25


@dataclass
class Phase:
    """What clients saw while one fault was in force (and until the mesh recovered)."""

    name: str
    acked_messages: dict[str, str] = field(default_factory=dict)  # client_message_id -> message_id
    acked_sequences: dict[str, int] = field(default_factory=dict)  # client_message_id -> sequence
    acked_submissions: dict[str, str] = field(default_factory=dict)  # idempotency_key -> submission_id
    errors: Counter[str] = field(default_factory=Counter)  # status code name -> calls that failed so
    stream_breaks: int = 0


@dataclass
class Reader:
    """One device's Connect stream, reopened from its last sequence after every break."""

    device: Device
    load: Load
    seen: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))  # message_id -> sequences
    resyncs: int = 0
    opened: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        while True:
            call = self.device.session.Connect(
                spb.ConnectRequest(last_sequence=self.device.last_sequence), metadata=self.device.auth
            )
            try:
                async for response in call:
                    self.opened.set()
                    kind = response.event.WhichOneof("kind")
                    if kind == "resync_required":
                        self.resyncs += 1
                    if response.sequence:
                        self.device.last_sequence = max(self.device.last_sequence, response.sequence)
                    if kind == "message_created":
                        message = response.event.message_created.message
                        self.seen[message.message_id].add(response.sequence)
            except grpc.aio.AioRpcError as exc:
                self.load.phase.errors[f"Connect:{exc.code().name}"] += 1
            finally:
                call.cancel()
            self.load.phase.stream_breaks += 1
            await asyncio.sleep(RETRY_S)


class Load:
    """The clients, their loops and their books."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.phases: list[Phase] = [Phase("warm-up")]
        self.devices: list[Device] = []
        self.readers: list[Reader] = []
        self.conversation_id = ""
        self.form_id = ""
        self._tasks: list[asyncio.Task[None]] = []
        self._senders: list[asyncio.Task[None]] = []
        self._running = False
        self.last_ok = 0.0

    @property
    def phase(self) -> Phase:
        """The phase now in force."""
        return self.phases[-1]

    def begin(self, name: str) -> Phase:
        """Start counting a new phase."""
        self.phases.append(Phase(name))
        return self.phase

    @property
    def forms(self) -> forms_pb2_grpc.FormsServiceStub:
        """FormsService through the gateway."""
        return forms_pb2_grpc.FormsServiceStub(self.channel)

    async def setup(self) -> None:
        """Two users with two devices each, their conversation, a form; every stream open."""
        alice = await register(self.channel, "alice-laptop")
        bob = await register(self.channel, "bob-laptop")
        self.devices = [alice, await another_device(alice, "alice-phone"), bob, await another_device(bob, "bob-phone")]
        self.conversation_id = await direct(alice, bob)
        form = await self.forms.CreateForm(
            fpb.CreateFormRequest(
                name="chaos",
                title="Chaos",
                fields=[fpb.Field(key="n", label="N", type=fpb.FIELD_TYPE_INTEGER, required=True)],
            ),
            metadata=alice.auth,
        )
        self.form_id = form.form.form_id
        self.readers = [Reader(device, self) for device in self.devices]
        self._running = True
        self._tasks = [asyncio.create_task(reader.run()) for reader in self.readers]
        await asyncio.wait_for(asyncio.gather(*(r.opened.wait() for r in self.readers)), 60)
        self._senders = [
            asyncio.create_task(self._sender(self.devices[0])),
            asyncio.create_task(self._sender(self.devices[2])),
            asyncio.create_task(self._submitter(self.devices[2])),
        ]

    async def stop_sending(self) -> None:
        """Stop the senders (an operation in flight is neither acked nor counted); streams stay open."""
        self._running = False
        for task in self._senders:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._senders, return_exceptions=True)

    async def stop(self) -> None:
        """Stop every loop and close the streams."""
        await self.stop_sending()
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _sender(self, device: Device) -> None:
        number = 0
        while self._running:
            number += 1
            client_id = uuid.uuid4().hex
            request = hpb.SendMessageRequest(
                conversation_id=self.conversation_id, client_message_id=client_id, text=f"{device.user_id} {number}"
            )
            while self._running:
                try:
                    reply = await device.history.SendMessage(request, metadata=device.auth, timeout=CALL_TIMEOUT_S)
                except grpc.aio.AioRpcError as exc:
                    self.phase.errors[f"SendMessage:{exc.code().name}"] += 1
                    await asyncio.sleep(RETRY_S)
                    continue
                self.phase.acked_messages[client_id] = reply.message.message_id
                self.phase.acked_sequences[client_id] = reply.message.sequence
                self.last_ok = time.monotonic()
                break
            await asyncio.sleep(PACE_S)

    async def _submitter(self, device: Device) -> None:
        number = 0
        while self._running:
            number += 1
            key = uuid.uuid4().hex
            request = fpb.SubmitRequest(
                form_id=self.form_id, idempotency_key=key, values={"n": fpb.FieldValue(integer_value=number)}
            )
            while self._running:
                try:
                    reply = await self.forms.Submit(request, metadata=device.auth, timeout=CALL_TIMEOUT_S)
                except grpc.aio.AioRpcError as exc:
                    self.phase.errors[f"Submit:{exc.code().name}"] += 1
                    await asyncio.sleep(RETRY_S)
                    continue
                self.phase.acked_submissions[key] = reply.submission_id
                break
            await asyncio.sleep(PACE_S * 4)

    async def wait_progress(self, messages: int, timeout_s: float) -> None:
        """Wait until ``messages`` more sends were acknowledged in the current phase."""
        target = len(self.phase.acked_messages) + messages
        deadline = time.monotonic() + timeout_s
        while len(self.phase.acked_messages) < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.phase.name}: no progress in {timeout_s:.0f}s: {dict(self.phase.errors)}")
            await asyncio.sleep(0.2)

    # -- the books ----------------------------------------------------------------

    async def _retrying(self, call: object, timeout_s: float = 120.0) -> object:
        """A read, retried while the mesh still recovers."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return await call()  # type: ignore[operator]
            except grpc.aio.AioRpcError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1)

    async def stored_messages(self) -> Counter[str]:
        """client_message_id -> how many stored messages carry it (ListMessages, every page).

        Also fills :attr:`stored_at`: sequence -> the client_message_id stored there.
        """
        counts: Counter[str] = Counter()
        self.stored_at: dict[int, str] = {}
        token = ""
        device = self.devices[0]
        while True:

            async def page(token: str = token) -> hpb.ListMessagesResponse:
                return await device.history.ListMessages(
                    hpb.ListMessagesRequest(
                        conversation_id=self.conversation_id,
                        page=common_pb2.PageRequest(page_size=200, page_token=token),
                        direction=common_pb2.DIRECTION_FORWARD,
                    ),
                    metadata=device.auth,
                    timeout=CALL_TIMEOUT_S,
                )

            reply = await self._retrying(page)
            assert isinstance(reply, hpb.ListMessagesResponse)
            counts.update(m.client_message_id for m in reply.messages)
            self.stored_at.update((m.sequence, m.client_message_id) for m in reply.messages)
            token = reply.page.next_page_token
            if not token:
                return counts

    async def stored_submissions(self) -> Counter[str]:
        """idempotency_key -> how many stored submissions carry it (ListSubmissions, every page)."""
        counts: Counter[str] = Counter()
        token = ""
        owner = self.devices[0]
        while True:

            async def page(token: str = token) -> fpb.ListSubmissionsResponse:
                return await self.forms.ListSubmissions(
                    fpb.ListSubmissionsRequest(
                        form_id=self.form_id, page=common_pb2.PageRequest(page_size=200, page_token=token)
                    ),
                    metadata=owner.auth,
                    timeout=CALL_TIMEOUT_S,
                )

            reply = await self._retrying(page)
            assert isinstance(reply, fpb.ListSubmissionsResponse)
            counts.update(s.idempotency_key for s in reply.submissions)
            token = reply.page.next_page_token
            if not token:
                return counts

    def all_acked_message_ids(self) -> set[str]:
        """Every acknowledged message's id, all phases."""
        return {mid for phase in self.phases for mid in phase.acked_messages.values()}

    def delivered_everywhere(self, message_ids: set[str]) -> bool:
        """Each of ``message_ids`` reached every device."""
        return all(message_ids <= reader.seen.keys() for reader in self.readers)


#: Clients reconnect quickly after the gateway comes back (gRPC's default back-off grows to 2 minutes).
CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 2000)]
