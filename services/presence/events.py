"""Presence on the bus: changes and typing out, session's device heartbeats in.

Subjects (see chatmesh/events/v1/events.proto): ``presence.changed.<user_id>`` and
``live.user.<user_id>`` carry serialized ``chatmesh.events.v1.Event``s on core NATS;
``presence.heartbeat`` carries ``DeviceHeartbeat``s from session.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any

from google.protobuf.message import DecodeError
from nats.aio.client import Client

from chatmesh.events.v1 import events_pb2
from services.presence.folder import Presence
from services.presence.messages import timestamp, user_presence
from services.presence.privacy import PresencePrivacy
from services.presence.tracker import PresenceTracker
from services.presence.typing_relay import TypingSignal
from services.runtime.errors import Unavailable
from services.runtime.subjects import HEARTBEAT_SUBJECT, live_subject, presence_changed_subject
from services.runtime.tasks import cancel_and_wait

log = logging.getLogger("chatmesh.presence.events")

# Replicas share the heartbeats: each one is folded (and written to the bucket) once.
HEARTBEAT_QUEUE = "presence"


class NatsEvents:
    """Publishes presence changes and typing signals (tracker.PresenceEventsPort, TypingSink)."""

    def __init__(self, nc: Client, privacy: PresencePrivacy | None = None) -> None:
        self._nc = nc
        self._privacy = privacy

    async def presence_changed(self, presence: Presence) -> None:
        """Publish ``presence`` on the user's presence.changed subject (last seen left out if its owner hides it).

        Session relays these to the Connect streams of the user's contacts only.
        """
        if self._privacy is not None and presence.last_seen_at is not None:
            try:
                presence = await self._privacy.shown(None, presence)
            except Exception:  # noqa: BLE001 - the setting unreadable: show less, not more
                presence = dataclasses.replace(presence, last_seen_at=None)
        event = events_pb2.Event(
            occurred_at=timestamp(time.time()),
            presence_changed=events_pb2.PresenceChanged(presence=user_presence(presence)),
        )
        await self._nc.publish(presence_changed_subject(presence.user_id), event.SerializeToString())

    async def typing(self, recipients: Sequence[str], signal: TypingSignal) -> None:
        """Publish ``signal`` on each recipient's live subject (raises Unavailable if NATS is gone)."""
        event = events_pb2.Event(
            occurred_at=timestamp(time.time()),
            typing=events_pb2.Typing(
                conversation_id=signal.conversation_id,
                user_id=signal.user_id,
                typing=signal.typing,
                expires_in_ms=signal.expires_in_ms,
            ),
        )
        data = event.SerializeToString()
        try:
            for recipient in recipients:
                await self._nc.publish(live_subject(recipient), data)
        except Exception as exc:  # closed connection, outbound buffer full
            raise Unavailable("typing not delivered: the bus is unavailable; retry") from exc


class HeartbeatListener:
    """Folds session's DeviceHeartbeats through ``lanes`` workers.

    A device always lands in the same lane, so its heartbeats and its leaving are
    written in the order they came; lanes write in parallel. A full lane holds the
    subscription back (backpressure) instead of queueing without bound.
    """

    def __init__(self, nc: Client, tracker: PresenceTracker, lanes: int = 32, lane_depth: int = 1024) -> None:
        self._nc = nc
        self._tracker = tracker
        self._lanes: list[asyncio.Queue[events_pb2.DeviceHeartbeat]] = [
            asyncio.Queue(maxsize=lane_depth) for _ in range(lanes)
        ]
        self._workers: list[asyncio.Task[None]] = []
        self._sub: Any = None

    async def start(self) -> None:
        """Start the lanes and subscribe (in the replicas' queue group)."""
        self._workers = [asyncio.create_task(self._work(lane)) for lane in self._lanes]
        self._sub = await self._nc.subscribe(HEARTBEAT_SUBJECT, queue=HEARTBEAT_QUEUE, cb=self._on_message)

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Unsubscribe, let the queued heartbeats be folded (within the timeout), stop the lanes."""
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # noqa: BLE001 - the connection may be gone already
                log.debug("heartbeat unsubscribe failed", exc_info=True)
            self._sub = None
        try:
            async with asyncio.timeout(drain_timeout_s):
                for lane in self._lanes:
                    await lane.join()
        except TimeoutError:
            log.warning("device heartbeats left unfolded on stop")
        await cancel_and_wait(self._workers)
        self._workers = []

    async def _on_message(self, msg: Any) -> None:
        try:
            beat = events_pb2.DeviceHeartbeat.FromString(msg.data)
        except DecodeError:
            log.warning("malformed device heartbeat dropped", extra={"subject": msg.subject})
            return
        await self._lanes[hash(beat.device_id) % len(self._lanes)].put(beat)

    async def _work(self, lane: asyncio.Queue[events_pb2.DeviceHeartbeat]) -> None:
        while True:
            beat = await lane.get()
            try:
                folded = await self._tracker.device_heartbeat(
                    beat.user_id, beat.device_id, connected=beat.connected, active=beat.active
                )
                if not folded:
                    log.debug("device heartbeat dropped", extra={"user_id": beat.user_id})
            except Exception:  # noqa: BLE001 - one bad heartbeat must not stop the rest
                log.warning("device heartbeat not folded", extra={"user_id": beat.user_id}, exc_info=True)
            finally:
                lane.task_done()
