"""Publishing conversation events to each member's stream (JetStream CHAT, `chat.user.<id>`)."""

from __future__ import annotations

from collections.abc import Iterable

from nats.aio.client import Client

from chatmesh.events.v1 import events_pb2
from services.runtime.bus import AckedPublisher
from services.runtime.errors import Unavailable
from services.runtime.subjects import chat_subject


class EventPublisher:
    """Publishes one event to several users and waits for every JetStream ack.

    Each publish carries ``Nats-Msg-Id`` = ``<dedup_key>:<user_id>``, so a retried send
    (same key) is stored once within the stream's duplicate window.
    """

    def __init__(self, nc: Client, timeout_s: float) -> None:
        self._nc = nc
        self._acked = AckedPublisher(nc)
        self._timeout_s = timeout_s

    async def publish(self, user_ids: Iterable[str], event: events_pb2.Event, dedup_key: str) -> None:
        """Publish ``event`` to each user; raise Unavailable if JetStream did not ack them all."""
        payload = event.SerializeToString()
        messages = [(chat_subject(user_id), payload, {"Nats-Msg-Id": f"{dedup_key}:{user_id}"}) for user_id in user_ids]
        try:
            await self._acked.publish(messages, self._timeout_s)
        except Exception as exc:  # ours (no ack in time, refused) and nats' connection errors of several types
            raise Unavailable(f"event bus unavailable; the change is stored, retry to deliver it: {exc}") from exc

    async def publish_unacked(self, user_ids: Iterable[str], event: events_pb2.Event, dedup_key: str) -> None:
        """Publish ``event`` to each user without waiting for JetStream's acks (best effort).

        For events nobody's success waits on (delivery receipts): the stream stores them all the
        same, de-duplicated by the same ``Nats-Msg-Id``, with no ack round trip per user.
        """
        payload = event.SerializeToString()
        try:
            for user_id in user_ids:
                headers = {"Nats-Msg-Id": f"{dedup_key}:{user_id}"}
                await self._nc.publish(chat_subject(user_id), payload, headers=headers)
        except Exception as exc:  # nats raises connection errors of several types
            raise Unavailable(f"event bus unavailable: {exc}") from exc
