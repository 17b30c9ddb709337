"""Steady chat load through the gateway, for the scale-out test and `make bench-scale`.

Pairs of users, one direct conversation each; every user sends messages and reads history
pages with plain gRPC stubs (no client retries: a failed call counts as failed; only the
gateway may retry, and only what is safe to repeat), and keeps one Connect stream open
with the Python SDK (which reconnects from its last sequence when a session replica goes
away). At the end every user's stream must have received every message of their
conversation exactly once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import grpc

from chatmesh.client import Client, RetryPolicy
from chatmesh.common.v1.common_pb2 import PageRequest
from chatmesh.history.v1 import history_pb2 as hpb
from chatmesh.history.v1 import history_pb2_grpc

PASSWORD = "correct horse battery"


@dataclass
class Call:
    """One finished call: when it ended, what it was, its status."""

    at: float
    method: str
    code: grpc.StatusCode
    details: str = ""


@dataclass
class LoadUser:
    """A user of the load: an SDK client (Connect), a plain stub (sends, pages), what the stream received."""

    name: str
    client: Client
    user_id: str = ""
    conversation_id: str = ""
    received: list[tuple[str, int, int]] = field(default_factory=list)
    """(conversation, message sequence, Connect sequence) of every MessageCreated received."""
    reconnects: int = 0


@dataclass
class StreamCheck:
    """What the Connect streams got, against what was sent."""

    expected: int
    missing: int
    duplicated: int
    out_of_order: int
    """Events whose Connect sequence is not above the one before: the stream's own order."""
    message_inversions: int
    """A message's event before an earlier message's of the same conversation. Not a fault: with
    several history replicas, two messages sent at the same moment through two replicas are
    published by each, and the later sequence's event can be stored first (both arrive once)."""


class SteadyLoad:
    """``users`` users in pairs, each sending, paging and listening, with ``think_s`` between calls."""

    def __init__(self, target: str, users: int = 10, think_s: float = 0.1, page_every: int = 4) -> None:
        if users < 2 or users % 2:
            raise ValueError("users must be an even number, at least 2")
        self.target = target
        self.think_s = think_s
        self.page_every = page_every
        self.calls: list[Call] = []
        self.sent: dict[str, list[int]] = {}
        self._channel = grpc.aio.insecure_channel(target)
        self._history = history_pb2_grpc.HistoryServiceStub(self._channel)
        self._users = [
            LoadUser(
                f"load{uuid.uuid4().hex[:10]}{i}",
                Client(target, retry=RetryPolicy(max_attempts=50, initial_backoff_s=0.05, max_backoff_s=1.0)),
            )
            for i in range(users)
        ]
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    @property
    def users(self) -> list[LoadUser]:
        """The load's users."""
        return self._users

    async def setup(self) -> None:
        """Register the users, make the conversations, open every Connect stream (live before returning)."""
        for user in self._users:
            account = await user.client.register(user.name, PASSWORD, "load")
            user.user_id = account.user_id
        for first, second in zip(self._users[::2], self._users[1::2], strict=True):
            conversation = await first.client.direct_conversation(second.user_id)
            first.conversation_id = second.conversation_id = conversation.conversation_id
            self.sent[conversation.conversation_id] = []
        opened = [user.client.events(idle_timeout_s=40) for user in self._users]
        await asyncio.gather(*(stream.live() for stream in opened))
        for user, stream in zip(self._users, opened, strict=True):
            self._tasks.append(asyncio.ensure_future(self._listen(user, stream)))

    def start(self) -> None:
        """Start sending (every user) until :meth:`stop`."""
        for user in self._users:
            self._tasks.append(asyncio.ensure_future(self._send_loop(user)))

    async def stop(self) -> None:
        """Stop sending (the streams keep listening until :meth:`close`)."""
        self._stopping.set()
        senders = [t for t in self._tasks if t.get_coro().__name__ == "_send_loop"]  # type: ignore[union-attr]
        await asyncio.gather(*senders, return_exceptions=True)

    async def close(self) -> None:
        """Stop everything, close the clients."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for user in self._users:
            with contextlib.suppress(Exception):
                await user.client.close()
        await self._channel.close()

    def window(self, start: float, end: float) -> tuple[int, list[Call]]:
        """Calls that ended in [start, end): how many, and the failed ones."""
        inside = [c for c in self.calls if start <= c.at < end]
        return len(inside), [c for c in inside if c.code != grpc.StatusCode.OK]

    async def _send_loop(self, user: LoadUser) -> None:
        count = 0
        while not self._stopping.is_set():
            count += 1
            auth = (("authorization", f"Bearer {user.client.tokens.access_token}"),)  # type: ignore[union-attr]
            if count % self.page_every == 0:
                await self._call(
                    "ListMessages",
                    self._history.ListMessages(
                        hpb.ListMessagesRequest(conversation_id=user.conversation_id, page=PageRequest(page_size=20)),
                        metadata=auth,
                        timeout=10,
                    ),
                )
            else:
                sent = await self._call(
                    "SendMessage",
                    self._history.SendMessage(
                        hpb.SendMessageRequest(
                            conversation_id=user.conversation_id,
                            client_message_id=uuid.uuid4().hex,
                            text=f"{user.name} {count}",
                        ),
                        metadata=auth,
                        timeout=10,
                    ),
                )
                if isinstance(sent, hpb.SendMessageResponse):
                    self.sent[user.conversation_id].append(sent.message.sequence)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.think_s)

    async def _call(self, method: str, call: object) -> object | None:
        try:
            reply: object = await call  # type: ignore[misc]
        except grpc.aio.AioRpcError as exc:
            self.calls.append(Call(time.monotonic(), method, exc.code(), exc.details() or ""))
            return None
        self.calls.append(Call(time.monotonic(), method, grpc.StatusCode.OK))
        return reply

    async def _listen(self, user: LoadUser, stream: object) -> None:
        async for item in stream:  # type: ignore[attr-defined]
            if item.event.HasField("message_created"):
                message = item.event.message_created.message
                user.received.append((message.conversation_id, message.sequence, item.sequence))

    async def settle(self, quiet_s: float = 3.0, limit_s: float = 60.0) -> None:
        """Wait until every stream has what was sent, or nothing arrives for ``quiet_s`` (at most ``limit_s``)."""
        deadline = time.monotonic() + limit_s
        last, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            total = sum(len(u.received) for u in self._users)
            if total != last:
                last, last_change = total, time.monotonic()
            if self.check().missing == 0 or time.monotonic() - last_change > quiet_s:
                return
            await asyncio.sleep(0.2)

    def check(self) -> StreamCheck:
        """Every user's stream against the sequences sent in their conversation."""
        expected = missing = duplicated = out_of_order = inversions = 0
        for user in self._users:
            sent = set(self.sent[user.conversation_id])
            mine = [
                (seq, stream) for conversation, seq, stream in user.received if conversation == user.conversation_id
            ]
            counts = Counter(seq for seq, _ in mine)
            expected += len(sent)
            missing += len(sent - set(counts))
            duplicated += sum(n - 1 for n in counts.values() if n > 1)
            out_of_order += sum(1 for a, b in zip(mine, mine[1:], strict=False) if b[1] <= a[1])
            inversions += sum(1 for a, b in zip(mine, mine[1:], strict=False) if b[0] < a[0])
        return StreamCheck(expected, missing, duplicated, out_of_order, inversions)
