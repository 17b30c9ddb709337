"""Device streams on real NATS: the process-wide live fan-out, and JetStream for every gap."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from chatmesh.events.v1 import events_pb2
from chatmesh.history.v1 import history_pb2 as hpb
from mesh.deps.nats import Nats
from services.history.streams import STREAMS
from services.runtime.bus import ensure_stream
from services.runtime.subjects import CHAT_STREAM, HEARTBEAT_SUBJECT, chat_subject
from services.runtime.tokens import Principal
from services.session.feed import DeviceFeed, FeedSettings


@pytest.fixture
async def nc(nats_server: Nats) -> AsyncIterator[Client]:
    """A connection with the CHAT stream declared (as history declares it)."""
    client = await nats.connect(nats_server.url)
    try:
        await ensure_stream(client.jetstream(), STREAMS[0])
        yield client
    finally:
        await client.close()


def _settings(queue_size: int = 1024) -> FeedSettings:
    return FeedSettings(keepalive_s=5.0, heartbeat_s=60.0, consumer_inactive_s=30.0, queue_size=queue_size)


def _principal(user_id: str) -> Principal:
    return Principal(user_id, str(uuid.uuid4()), str(uuid.uuid4()))


async def _publish(nc: Client, user_id: str, texts: list[str]) -> list[int]:
    """Publish one MessageCreated per text to the user's stream; return their stream sequences."""
    js = nc.jetstream()
    sequences = []
    for text in texts:
        event = events_pb2.Event(
            message_created=events_pb2.MessageCreated(
                message=hpb.Message(conversation_id=str(uuid.uuid4()), author_user_id=user_id, text=text)
            )
        )
        ack = await js.publish(chat_subject(user_id), event.SerializeToString())
        sequences.append(ack.seq)
    return sequences


class Device:
    """An open device stream, read by a task into a queue (a timed-out read must not end the stream)."""

    def __init__(
        self, feed: DeviceFeed, user_id: str, last_sequence: int = 0, principal: Principal | None = None
    ) -> None:
        self.events = feed.open(principal or _principal(user_id), last_sequence, [])
        self.queue: asyncio.Queue[tuple[int, events_pb2.Event]] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for item in self.events:
            await self.queue.put(item)

    async def first(self) -> events_pb2.Event:
        """The stream's first event (a keep-alive or a resync)."""
        return (await asyncio.wait_for(self.queue.get(), 10))[1]

    async def take(self, count: int) -> list[tuple[int, str]]:
        """The next ``count`` message events: (sequence, text); keep-alives skipped."""
        got: list[tuple[int, str]] = []
        while len(got) < count:
            sequence, event = await asyncio.wait_for(self.queue.get(), 10)
            if event.HasField("message_created"):
                got.append((sequence, event.message_created.message.text))
        return got

    async def nothing_more(self, wait_s: float = 0.5) -> bool:
        """No message event arrives within ``wait_s``."""
        await asyncio.sleep(wait_s)
        return not any(e.HasField("message_created") for _, e in self.queue._queue)  # type: ignore[attr-defined]

    async def close(self) -> None:
        """End the stream as the servicer does."""
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self.events.aclose()  # type: ignore[attr-defined]


async def _consumers_of(nc: Client, user_id: str) -> int:
    infos = await nc.jetstream().consumers_info(CHAT_STREAM)
    return sum(1 for c in infos if c.config.filter_subject == chat_subject(user_id))


@contextlib.asynccontextmanager
async def _feed(nc: Client, queue_size: int = 1024) -> AsyncIterator[DeviceFeed]:
    feed = DeviceFeed(nc, _settings(queue_size))
    try:
        yield feed
    finally:
        await feed.close()


async def test_a_device_too_slow_for_the_live_fanout_gets_what_it_missed_from_the_stream_in_order(nc: Client) -> None:
    user = str(uuid.uuid4())
    await _publish(nc, user, ["from before it connected"])
    async with _feed(nc, queue_size=16) as feed:
        # A stream nobody reads while 200 events arrive: its buffer holds 16, the fan-out drops
        # the rest for it, and the stream has them.
        events = feed.open(_principal(user), 0, [])
        assert (await anext(events))[1].HasField("keep_alive")
        sequences = await _publish(nc, user, [f"m{i}" for i in range(200)])
        await asyncio.sleep(0.3)
        got = []
        while len(got) < 200:
            sequence, event = await asyncio.wait_for(anext(events), 10)
            if event.HasField("message_created"):
                got.append((sequence, event.message_created.message.text))
        assert got == list(zip(sequences, [f"m{i}" for i in range(200)], strict=True))
        assert await _consumers_of(nc, user) == 1  # the one it replayed with; the first one is gone
        more = await _publish(nc, user, ["live again", "and again"])
        assert [(s, e.message_created.message.text) for s, e in [await anext(events), await anext(events)]] == list(
            zip(more, ["live again", "and again"], strict=True)
        )
        await events.aclose()  # type: ignore[attr-defined]
    assert await _consumers_of(nc, user) == 0


async def test_a_reconnecting_device_gets_exactly_its_gap_then_live_events(nc: Client) -> None:
    user = str(uuid.uuid4())
    before = await _publish(nc, user, [f"before {i}" for i in range(5)])
    async with _feed(nc) as feed:
        device = Device(feed, user, before[1])
        await device.first()
        assert await device.take(3) == list(zip(before[2:], ["before 2", "before 3", "before 4"], strict=True))
        after = await _publish(nc, user, ["after 0", "after 1"])
        assert await device.take(2) == list(zip(after, ["after 0", "after 1"], strict=True))
        assert await device.nothing_more()
        await device.close()


async def test_every_device_of_a_user_gets_each_event_once_and_no_one_elses(nc: Client) -> None:
    user, other = str(uuid.uuid4()), str(uuid.uuid4())
    async with _feed(nc) as feed:
        devices = [Device(feed, user) for _ in range(2)]
        stranger = Device(feed, other)
        for device in (*devices, stranger):
            await device.first()
        sequences = await _publish(nc, user, [f"m{i}" for i in range(20)])
        for device in devices:
            assert await device.take(20) == list(zip(sequences, [f"m{i}" for i in range(20)], strict=True))
            assert await device.nothing_more()
        assert await stranger.nothing_more()
        for device in (*devices, stranger):
            await device.close()


async def test_a_new_device_gets_only_events_stored_after_it_connected(nc: Client) -> None:
    user = str(uuid.uuid4())
    await _publish(nc, user, ["old"])
    async with _feed(nc) as feed:
        device = Device(feed, user)
        await device.first()
        fresh = await _publish(nc, user, ["new"])
        assert await device.take(1) == [(fresh[0], "new")]
        assert await device.nothing_more()
        await device.close()


async def test_a_device_leaves_only_when_its_last_stream_ends(nc: Client) -> None:
    """Two tabs share a device: closing one must not tell presence the device went away."""
    principal = _principal(str(uuid.uuid4()))
    beats: asyncio.Queue[events_pb2.DeviceHeartbeat] = asyncio.Queue()

    async def on_beat(msg: Msg) -> None:
        beat = events_pb2.DeviceHeartbeat.FromString(msg.data)
        if beat.device_id == principal.device_id:
            await beats.put(beat)

    subscription = await nc.subscribe(HEARTBEAT_SUBJECT, cb=on_beat)
    try:
        async with _feed(nc) as feed:
            tabs = [Device(feed, principal.user_id, principal=principal) for _ in range(2)]
            for tab in tabs:
                assert (await tab.first()).HasField("keep_alive")
            await tabs[0].close()
            await nc.flush()
            await asyncio.sleep(0.3)
            seen = [beats.get_nowait() for _ in range(beats.qsize())]
            assert seen and all(beat.connected for beat in seen), "one tab closing reported the device gone"

            await tabs[1].close()
            last = await asyncio.wait_for(beats.get(), 5)
            assert not last.connected
    finally:
        await subscription.unsubscribe()
