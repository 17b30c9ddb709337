"""PresenceService: proto messages in, domain calls, proto messages out."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

from chatmesh.presence.v1 import presence_pb2 as pb
from chatmesh.presence.v1 import presence_pb2_grpc
from services.presence.messages import user_presence
from services.presence.tracker import PresenceTracker
from services.presence.typing_relay import TypingRelay
from services.runtime.errors import Unauthenticated
from services.runtime.interceptors import Context, current_principal


def _authorization(context: Context) -> str:
    """The caller's `authorization` header, to forward as is (AuthLayer already checked it)."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            return value
    raise Unauthenticated("missing access token: send `authorization: Bearer <token>`")


class PresenceServicer(presence_pb2_grpc.PresenceServiceServicer):
    """Heartbeat, GetPresence, WatchPresence and SetTyping."""

    def __init__(self, tracker: PresenceTracker, typing: TypingRelay) -> None:
        self._tracker = tracker
        self._typing = typing

    async def Heartbeat(self, request: pb.HeartbeatRequest, context: Context) -> pb.HeartbeatResponse:
        principal = current_principal()
        next_s = await self._tracker.heartbeat(principal.user_id, principal.device_id, request.active)
        return pb.HeartbeatResponse(next_heartbeat_s=next_s)

    async def GetPresence(self, request: pb.GetPresenceRequest, context: Context) -> pb.GetPresenceResponse:
        presences = await self._tracker.presences(list(request.user_ids))
        return pb.GetPresenceResponse(presences=[user_presence(p) for p in presences])

    async def WatchPresence(
        self, request: pb.WatchPresenceRequest, context: Context
    ) -> AsyncIterator[pb.WatchPresenceResponse]:
        # No keep-alive exists in this contract: a watch with no change stays silent, and
        # a proxy that ends idle streams (Envoy: 300 s) makes the client re-open it; the
        # re-opened stream starts with the current states, so nothing is missed.
        async with contextlib.aclosing(self._tracker.watch(list(request.user_ids))) as changes:
            async for presence in changes:
                yield pb.WatchPresenceResponse(presence=user_presence(presence))

    async def SetTyping(self, request: pb.SetTypingRequest, context: Context) -> pb.SetTypingResponse:
        principal = current_principal()
        signal = await self._typing.set_typing(
            principal.user_id, request.conversation_id, request.typing, _authorization(context), time.monotonic()
        )
        return pb.SetTypingResponse(expires_in_ms=signal.expires_in_ms)
