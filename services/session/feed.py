"""A device's live event stream (session.Connect), fed by NATS.

Sources, merged into one ordered-per-source stream:
- ``chat.user.<user>``: JetStream (CHAT) through an ordered, ephemeral consumer of its
  own, so every device and tab gets each event once and in order; it starts after the
  device's last sequence (the gap is replayed) or, if that gap is older than the
  stream's retention, with a ResyncRequired event and then new events only. JetStream
  removes the consumer by itself once the device is gone (inactive threshold).
- ``live.user.<user>``: core NATS, ephemeral events (typing, assistant tokens).
- ``presence.changed.<id>``: core NATS, one per watched user.

While open, the feed reports the device alive on ``presence.heartbeat`` and reports
messages from others as delivered on ``history.delivered``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from chatmesh.events.v1 import events_pb2
from services.runtime.errors import Unavailable
from services.runtime.subjects import (
    CHAT_STREAM,
    DELIVERED_SUBJECT,
    HEARTBEAT_SUBJECT,
    chat_subject,
    live_subject,
    presence_changed_subject,
)
from services.runtime.tokens import Principal

log = logging.getLogger("chatmesh.session.feed")


@dataclass(frozen=True)
class FeedSettings:
    """Timings of a device stream."""

    keepalive_s: float
    heartbeat_s: float
    consumer_inactive_s: float
    queue_size: int


def _event(**kind: object) -> events_pb2.Event:
    event = events_pb2.Event(**kind)  # type: ignore[arg-type]
    event.occurred_at.GetCurrentTime()
    return event


class DeviceFeed:
    """Opens event streams for devices."""

    def __init__(self, nc: Client, settings: FeedSettings) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._settings = settings

    async def _start_position(self, last_sequence: int) -> tuple[ConsumerConfig, events_pb2.Event | None]:
        """Where the device's consumer starts, and the resync event to send first, if any."""
        if last_sequence == 0:
            return ConsumerConfig(deliver_policy=DeliverPolicy.NEW), None
        try:
            info = await self._js.stream_info(CHAT_STREAM)
        except NotFoundError:
            raise Unavailable("the chat event stream does not exist yet (is history running?)") from None
        first, last = info.state.first_seq, info.state.last_seq
        if last_sequence + 1 < first or last_sequence > last:
            # Events after last_sequence may be gone (retention), or the stream is not the one
            # the device saw: it must reload from history, then follow new events.
            resync = _event(resync_required=events_pb2.ResyncRequired(oldest_available_sequence=first))
            return ConsumerConfig(deliver_policy=DeliverPolicy.NEW), resync
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=last_sequence + 1)
        return config, None

    async def open(
        self, principal: Principal, last_sequence: int, watch_user_ids: list[str]
    ) -> AsyncIterator[tuple[int, events_pb2.Event]]:
        """Yield (sequence, event) for the device until the caller stops iterating."""
        queue: asyncio.Queue[tuple[int, events_pb2.Event]] = asyncio.Queue(self._settings.queue_size)
        config, resync = await self._start_position(last_sequence)
        config.inactive_threshold = self._settings.consumer_inactive_s

        async def on_chat(msg: Msg) -> None:
            await queue.put((msg.metadata.sequence.stream, events_pb2.Event.FromString(msg.data)))

        async def on_live(msg: Msg) -> None:
            await queue.put((0, events_pb2.Event.FromString(msg.data)))

        subscriptions: list[Subscription] = []
        try:
            subscriptions.append(
                await self._js.subscribe(
                    chat_subject(principal.user_id),
                    stream=CHAT_STREAM,
                    cb=on_chat,
                    ordered_consumer=True,
                    config=config,
                    pending_msgs_limit=self._settings.queue_size,
                )
            )
        except NotFoundError:
            raise Unavailable("the chat event stream does not exist yet (is history running?)") from None
        subscriptions.append(await self._nc.subscribe(live_subject(principal.user_id), cb=on_live))
        for user_id in watch_user_ids:
            subscriptions.append(await self._nc.subscribe(presence_changed_subject(user_id), cb=on_live))
        heartbeats = asyncio.create_task(self._heartbeats(principal))
        delivered: dict[str, int] = {}
        try:
            # The first event says the stream is live: anything sent from now on arrives.
            yield 0, resync if resync is not None else _event(keep_alive=events_pb2.KeepAlive())
            while True:
                try:
                    sequence, event = await asyncio.wait_for(queue.get(), self._settings.keepalive_s)
                except TimeoutError:
                    yield 0, _event(keep_alive=events_pb2.KeepAlive())
                    continue
                yield sequence, event
                if event.HasField("message_created"):
                    await self._report_delivered(principal, event.message_created, delivered)
        finally:
            heartbeats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeats
            if subscriptions:
                # Remove the device's consumer now rather than after the inactive threshold
                # (which still covers a session replica that dies without this cleanup).
                with contextlib.suppress(Exception):  # the connection may be closing too
                    info = await subscriptions[0].consumer_info()  # type: ignore[attr-defined]
                    await self._js.delete_consumer(CHAT_STREAM, info.name)
            for subscription in subscriptions:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()
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
