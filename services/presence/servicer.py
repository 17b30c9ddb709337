"""PresenceService: proto messages in, domain calls, proto messages out."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

from chatmesh.presence.v1 import presence_pb2 as pb
from chatmesh.presence.v1 import presence_pb2_grpc
from services.presence.messages import user_presence
from services.presence.privacy import PresencePrivacy, unknown
from services.presence.tracker import PresenceTracker
from services.presence.typing_relay import TypingRelay
from services.runtime.errors import Unauthenticated
from services.runtime.ids import canonical_uuid, canonical_uuid_or_none, canonical_uuids
from services.runtime.interceptors import Context, current_principal


def _authorization(context: Context) -> str:
    """The caller's `authorization` header, to forward as is (AuthLayer already checked it)."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            return value
    raise Unauthenticated("missing access token: send `authorization: Bearer <token>`")


def _me() -> str:
    """The caller's user id, canonical."""
    user_id = current_principal().user_id
    return canonical_uuid_or_none(user_id) or user_id


class PresenceServicer(presence_pb2_grpc.PresenceServiceServicer):
    """Heartbeat, GetPresence, WatchPresence, SetTyping and the caller's privacy settings."""

    def __init__(self, tracker: PresenceTracker, typing: TypingRelay, privacy: PresencePrivacy) -> None:
        self._tracker = tracker
        self._typing = typing
        self._privacy = privacy

    async def Heartbeat(self, request: pb.HeartbeatRequest, context: Context) -> pb.HeartbeatResponse:
        principal = current_principal()
        next_s = await self._tracker.heartbeat(_me(), principal.device_id, request.active)
        return pb.HeartbeatResponse(next_heartbeat_s=next_s)

    async def GetPresence(self, request: pb.GetPresenceRequest, context: Context) -> pb.GetPresenceResponse:
        viewer = _me()
        user_ids = canonical_uuids("user_ids", request.user_ids)
        visible = await self._privacy.visible(viewer, user_ids, _authorization(context))
        held = {p.user_id: p for p in await self._tracker.presences([u for u in user_ids if u in visible])}
        presences = [
            await self._privacy.shown(viewer, held[u]) if u in held else unknown(u)
            for u in user_ids  # non-contacts look like users who never came online
        ]
        return pb.GetPresenceResponse(presences=[user_presence(p) for p in presences])

    async def WatchPresence(
        self, request: pb.WatchPresenceRequest, context: Context
    ) -> AsyncIterator[pb.WatchPresenceResponse]:
        # No keep-alive exists in this contract: a watch with no change stays silent, and
        # a proxy that ends idle streams (Envoy: 300 s) makes the client re-open it; the
        # re-opened stream starts with the current states, so nothing is missed.
        viewer = _me()
        user_ids = canonical_uuids("user_ids", request.user_ids)
        visible = await self._privacy.visible(viewer, user_ids, _authorization(context))
        watched = [u for u in user_ids if u in visible]
        # Others look like users never online: a first state, then silence.
        hidden = [unknown(u) for u in user_ids if u not in visible]
        async with contextlib.aclosing(self._tracker.watch(watched, hidden)) as changes:
            async for presence in changes:
                shown = await self._privacy.shown(viewer, presence)
                yield pb.WatchPresenceResponse(presence=user_presence(shown))

    async def SetTyping(self, request: pb.SetTypingRequest, context: Context) -> pb.SetTypingResponse:
        conversation_id = canonical_uuid("conversation_id", request.conversation_id)
        signal = await self._typing.set_typing(
            _me(), conversation_id, request.typing, _authorization(context), time.monotonic()
        )
        return pb.SetTypingResponse(expires_in_ms=signal.expires_in_ms)

    async def GetPrivacy(self, request: pb.GetPrivacyRequest, context: Context) -> pb.GetPrivacyResponse:
        hidden = await self._privacy.hides_last_seen(_me())
        return pb.GetPrivacyResponse(privacy=pb.PrivacySettings(hide_last_seen=hidden))

    async def UpdatePrivacy(self, request: pb.UpdatePrivacyRequest, context: Context) -> pb.UpdatePrivacyResponse:
        await self._privacy.set_hide_last_seen(_me(), request.privacy.hide_last_seen)
        return pb.UpdatePrivacyResponse(privacy=pb.PrivacySettings(hide_last_seen=request.privacy.hide_last_seen))
