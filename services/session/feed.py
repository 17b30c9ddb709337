"""A device's live event stream (session.Connect), fed by NATS.

Sources, merged into one ordered-per-source stream:
- ``chat.user.<user>``: JetStream (CHAT). One ordered consumer for the whole session
  process (:class:`ChatFanout`, on ``chat.user.>``) delivers every user's events with
  their stream sequences, in order, and hands each to the open streams of that user's
  devices in this process: no consumer, flow-control timer or serialization per device
  on the hot path. Each device keeps a cursor (the last sequence it was given) and
  skips anything at or below it, so events are given once and in order.
- Gaps come from JetStream: each device has one ephemeral pull consumer on its user's
  subject (its replay cursor). It replays a reconnecting device's gap from its last
  sequence (or, if that gap is older than the stream's retention, the stream starts with
  a ResyncRequired event and then new events only), and it is made again from the
  device's cursor whenever the device fell too far behind the live fan-out to buffer
  what it missed (a slow client: the fan-out never waits for one device). JetStream
  removes a gone device's consumer by itself (inactive threshold); the stream removes
  it at once when it ends.
- ``live.user.<user>``: core NATS, ephemeral events (typing, assistant tokens).
- ``presence.changed.<id>``: core NATS, one per watched user.

While open, the feed reports the device alive on ``presence.heartbeat`` and reports
messages from others as delivered on ``history.delivered``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter, deque
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy
from nats.js.errors import NotFoundError

from chatmesh.events.v1 import events_pb2
from services.runtime.errors import Unavailable
from services.runtime.subjects import (
    CHAT_STREAM,
    CHAT_SUBJECTS,
    DELIVERED_SUBJECT,
    HEARTBEAT_SUBJECT,
    chat_subject,
    chat_subject_user,
    live_subject,
    presence_changed_subject,
)
from services.runtime.tokens import Principal

log = logging.getLogger("chatmesh.session.feed")

REPLAY_BATCH = 256
"""Events fetched from a device's replay consumer at a time."""


@dataclass(frozen=True)
class FeedSettings:
    """Timings of a device stream."""

    keepalive_s: float
    heartbeat_s: float
    consumer_inactive_s: float
    queue_size: int
    fanout_pending_limit: int = 1_000_000
    request_timeout_s: float = 5.0


def _event(**kind: object) -> events_pb2.Event:
    event = events_pb2.Event(**kind)  # type: ignore[arg-type]
    event.occurred_at.GetCurrentTime()
    return event


class DeviceInbox:
    """What the live fan-out handed one device stream and it has not taken yet.

    Bounded: a device that falls ``limit`` events behind stops taking chat events from
    the fan-out (``overflowed``) and catches up from JetStream instead; ephemeral events
    that find it full are dropped (they are never replayed anyway).
    """

    __slots__ = ("_waiter", "items", "limit", "overflowed")

    def __init__(self, limit: int) -> None:
        self.items: deque[tuple[int, events_pb2.Event]] = deque()
        self.limit = limit
        self.overflowed = False
        self._waiter: asyncio.Future[None] | None = None

    def push(self, sequence: int, event: events_pb2.Event) -> None:
        """Hand over one event (``sequence`` 0: ephemeral); never waits."""
        if sequence and self.overflowed:
            return
        if len(self.items) >= self.limit:
            if sequence:
                self.overflowed = True
            self._wake()
            return
        self.items.append((sequence, event))
        self._wake()

    def restart(self) -> None:
        """Take chat events from the fan-out again (the caller replays what was dropped)."""
        self.overflowed = False
        self.items.clear()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, timeout_s: float) -> bool:
        """Wait until there is something to take or to replay; False after ``timeout_s`` idle."""
        if self.items or self.overflowed:
            return True
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(waiter, timeout_s)
        except TimeoutError:
            return False
        finally:
            self._waiter = None
        return True


class ChatFanout:
    """One ordered JetStream consumer on every user's events, handed to this process's device streams."""

    def __init__(self, nc: Client, pending_msgs_limit: int) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._pending_msgs_limit = pending_msgs_limit
        self._inboxes: dict[str, list[DeviceInbox]] = {}
        self._subscription: Subscription | None = None
        self._starting = asyncio.Lock()

    async def start(self) -> None:
        """Start the consumer at the stream's end (idempotent); Unavailable if the stream does not exist yet."""
        if self._subscription is not None:
            return
        async with self._starting:
            if self._subscription is not None:
                return
            try:
                info = await self._js.stream_info(CHAT_STREAM)
                start = info.state.last_seq + 1
                subscription = await self._js.subscribe(
                    CHAT_SUBJECTS,
                    stream=CHAT_STREAM,
                    cb=self._on_event,
                    ordered_consumer=True,
                    config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start),
                    pending_msgs_limit=self._pending_msgs_limit,
                    pending_bytes_limit=256 * 1024 * 1024,
                )
            except NotFoundError:
                raise Unavailable("the chat event stream does not exist yet (is history running?)") from None
            # The ordered consumer restarts itself after a gap or a lost connection from the
            # last sequence it delivered; before its first event that must be where it began,
            # not the stream's first event (nats-py starts that count at 0).
            jsi = getattr(subscription, "_jsi", None)
            if jsi is not None and getattr(jsi, "_sseq", None) == 0:
                jsi._sseq = start - 1
            self._subscription = subscription

    async def stop(self) -> None:
        """Stop the consumer (JetStream removes it once it is gone)."""
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            with contextlib.suppress(Exception):  # the connection may be closing too
                await subscription.unsubscribe()

    def attach(self, user_id: str, inbox: DeviceInbox) -> None:
        """Start handing ``user_id``'s events to ``inbox``."""
        self._inboxes.setdefault(user_id, []).append(inbox)

    def detach(self, user_id: str, inbox: DeviceInbox) -> None:
        """Stop handing events to ``inbox``."""
        inboxes = self._inboxes.get(user_id)
        if inboxes is None:
            return
        with contextlib.suppress(ValueError):
            inboxes.remove(inbox)
        if not inboxes:
            del self._inboxes[user_id]

    async def _on_event(self, msg: Msg) -> None:
        inboxes = self._inboxes.get(chat_subject_user(msg.subject))
        if not inboxes:
            return  # no device of this user is connected here: not even parsed
        sequence = msg.metadata.sequence.stream
        event = events_pb2.Event.FromString(msg.data)
        for inbox in inboxes:
            inbox.push(sequence, event)


class DeviceFeed:
    """Opens event streams for devices."""

    def __init__(self, nc: Client, settings: FeedSettings) -> None:
        self._nc = nc
        self._js = nc.jetstream(timeout=settings.request_timeout_s)
        self._settings = settings
        self._fanout = ChatFanout(nc, settings.fanout_pending_limit)
        # Open streams per (user, device): a device's tabs share it, and the device leaves
        # (presence hears connected=False) only when its last stream ends.
        self._open_streams: Counter[tuple[str, str]] = Counter()

    async def close(self) -> None:
        """Stop the live fan-out (open streams end with the server)."""
        await self._fanout.stop()

    async def _start_position(self, last_sequence: int) -> tuple[int, events_pb2.Event | None]:
        """The first sequence to replay (0: new events only), and the resync event to send first, if any."""
        if last_sequence == 0:
            return 0, None
        try:
            info = await self._js.stream_info(CHAT_STREAM)
        except NotFoundError:
            raise Unavailable("the chat event stream does not exist yet (is history running?)") from None
        first, last = info.state.first_seq, info.state.last_seq
        if last_sequence + 1 < first or last_sequence > last:
            # Events after last_sequence may be gone (retention), or the stream is not the one
            # the device saw: it must reload from history, then follow new events.
            return 0, _event(resync_required=events_pb2.ResyncRequired(oldest_available_sequence=first))
        return last_sequence + 1, None

    async def _replay_consumer(self, user_id: str, start: int) -> ConsumerInfo:
        """A pull consumer on the user's events from ``start`` (0: from the stream's end)."""
        config = ConsumerConfig(
            name=uuid.uuid4().hex,
            filter_subject=chat_subject(user_id),
            ack_policy=AckPolicy.NONE,
            inactive_threshold=self._settings.consumer_inactive_s,
            mem_storage=True,
            num_replicas=1,
        )
        if start:
            config.deliver_policy, config.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, start
        else:
            config.deliver_policy = DeliverPolicy.NEW
        try:
            return await self._js.add_consumer(CHAT_STREAM, config)
        except NotFoundError:
            raise Unavailable("the chat event stream does not exist yet (is history running?)") from None

    async def _delete_consumer(self, name: str) -> None:
        with contextlib.suppress(Exception):  # gone already (inactive threshold), or the connection is closing
            await self._js.delete_consumer(CHAT_STREAM, name)

    async def _replay(self, consumer: ConsumerInfo) -> AsyncGenerator[tuple[int, events_pb2.Event]]:
        """Every event the consumer had pending when made (and any after, up to when it runs dry)."""
        pending = consumer.num_pending or 0
        if pending == 0:
            return
        subscription = await self._js.pull_subscribe_bind(
            consumer=consumer.name, stream=CHAT_STREAM, pending_msgs_limit=2 * REPLAY_BATCH
        )
        try:
            while pending > 0:
                try:
                    batch = await subscription.fetch(min(pending, REPLAY_BATCH), self._settings.request_timeout_s)
                except TimeoutError:
                    return  # what was pending is gone (retention) or was never there: nothing to replay
                for msg in batch:
                    metadata = msg.metadata
                    pending = metadata.num_pending
                    yield metadata.sequence.stream, events_pb2.Event.FromString(msg.data)
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def open(
        self, principal: Principal, last_sequence: int, watch_user_ids: list[str]
    ) -> AsyncIterator[tuple[int, events_pb2.Event]]:
        """Yield (sequence, event) for the device until the caller stops iterating."""
        user_id = principal.user_id
        device = (user_id, principal.device_id)
        start, resync = await self._start_position(last_sequence)
        await self._fanout.start()
        inbox = DeviceInbox(self._settings.queue_size)

        async def on_live(msg: Msg) -> None:
            inbox.push(0, events_pb2.Event.FromString(msg.data))

        subscriptions: list[Subscription] = []
        # Attached before the replay consumer exists: whatever the consumer does not have
        # yet is stored after it was made, so the fan-out hands it over. Overlap is skipped
        # by sequence.
        self._fanout.attach(user_id, inbox)
        consumer: ConsumerInfo | None = None
        heartbeats: asyncio.Task[None] | None = None
        try:
            consumer = await self._replay_consumer(user_id, start)
            # Given up to here: what came before the replay's first event (or, new events
            # only, everything stored before the consumer was made).
            cursor = start - 1 if start else (consumer.delivered.stream_seq if consumer.delivered else 0) or 0
            subscriptions.append(await self._nc.subscribe(live_subject(user_id), cb=on_live))
            for watched in watch_user_ids:
                subscriptions.append(await self._nc.subscribe(presence_changed_subject(watched), cb=on_live))
            self._open_streams[device] += 1
            heartbeats = asyncio.create_task(self._heartbeats(principal))
            delivered: dict[str, int] = {}
            # The first event says the stream is live: anything sent from now on arrives.
            yield 0, resync if resync is not None else _event(keep_alive=events_pb2.KeepAlive())
            replay: ConsumerInfo | None = consumer
            while True:
                if inbox.overflowed:
                    # Fell behind the fan-out: catch up from the stream, from the cursor on.
                    inbox.restart()
                    await self._delete_consumer(consumer.name)
                    consumer = replay = await self._replay_consumer(user_id, cursor + 1)
                if replay is not None:
                    async with contextlib.aclosing(self._replay(replay)) as replayed:
                        async for sequence, event in replayed:
                            if sequence <= cursor:
                                continue
                            cursor = sequence
                            yield sequence, event
                            if event.HasField("message_created"):
                                await self._report_delivered(principal, event.message_created, delivered)
                    replay = None
                while inbox.items:
                    sequence, event = inbox.items.popleft()
                    if sequence:
                        if sequence <= cursor:
                            continue
                        cursor = sequence
                    yield sequence, event
                    if event.HasField("message_created"):
                        await self._report_delivered(principal, event.message_created, delivered)
                    if inbox.overflowed:
                        break
                if not inbox.overflowed and not await inbox.wait(self._settings.keepalive_s):
                    yield 0, _event(keep_alive=events_pb2.KeepAlive())
        finally:
            self._fanout.detach(user_id, inbox)
            if heartbeats is not None:
                heartbeats.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeats
            if consumer is not None:
                # Remove the device's consumer now rather than after the inactive threshold
                # (which still covers a session replica that dies without this cleanup).
                await self._delete_consumer(consumer.name)
            for subscription in subscriptions:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()
            if heartbeats is not None:
                self._open_streams[device] -= 1
                if self._open_streams[device] <= 0:
                    del self._open_streams[device]
                    await self._publish_heartbeat(principal, connected=False)

    async def _report_delivered(
        self, principal: Principal, created: events_pb2.MessageCreated, delivered: dict[str, int]
    ) -> None:
        message = created.message
        if message.author_user_id == principal.user_id or delivered.get(message.conversation_id, 0) >= message.sequence:
            return
        delivered[message.conversation_id] = message.sequence
        receipt = events_pb2.DeliveryReceipt(
            conversation_id=message.conversation_id,
            delivered_sequence=message.sequence,
            user_id=principal.user_id,
        )
        await self._nc.publish(DELIVERED_SUBJECT, receipt.SerializeToString())

    async def _heartbeats(self, principal: Principal) -> None:
        while True:
            await self._publish_heartbeat(principal, connected=True)
            await asyncio.sleep(self._settings.heartbeat_s)

    async def _publish_heartbeat(self, principal: Principal, connected: bool) -> None:
        beat = events_pb2.DeviceHeartbeat(
            user_id=principal.user_id, device_id=principal.device_id, connected=connected, active=True
        )
        try:
            await self._nc.publish(HEARTBEAT_SUBJECT, beat.SerializeToString())
        except Exception as exc:  # presence is best effort; the stream itself must not fail for it
            log.warning("heartbeat not published", extra={"reason": str(exc)})
