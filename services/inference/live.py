"""Assistant tokens on the bus: `live.user.<user_id>` (core NATS, ephemeral), seen through session.Connect."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.client import Client

from chatmesh.events.v1 import events_pb2
from services.runtime.subjects import live_subject

log = logging.getLogger("chatmesh.inference.live")


class LiveTokens:
    """Publishes a reply's tokens to every member's live subject; a bus failure never stops the reply."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc

    async def token(
        self, user_ids: Sequence[str], conversation_id: str, request_id: str, index: int, text: str, done: bool
    ) -> None:
        """Publish one AssistantToken event (``done`` on the last one, text maybe empty)."""
        stamp = Timestamp()
        stamp.FromMilliseconds(round(time.time() * 1000))
        event = events_pb2.Event(
            occurred_at=stamp,
            assistant_token=events_pb2.AssistantToken(
                conversation_id=conversation_id, request_id=request_id, index=index, text=text, done=done
            ),
        )
        data = event.SerializeToString()
        try:
            for user_id in user_ids:
                await self._nc.publish(live_subject(user_id), data)
        except Exception:  # noqa: BLE001 - tokens are ephemeral; the caller's own stream still has them
            log.warning("assistant token not published", extra={"conversation_id": conversation_id}, exc_info=True)
