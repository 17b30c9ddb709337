"""Membership checks against the history service (implements typing_relay.MembershipPort).

The caller's own ``authorization`` is forwarded, so history applies its own rule
(members only) and presence never sees more than the caller may.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from chatmesh.history.v1 import history_pb2, history_pb2_grpc
from services.runtime.channels import peer_channel
from services.runtime.peers import forwarded, relayed_error


class HistoryMembership:
    """Asks history's GetConversation who is in a conversation."""

    def __init__(self, target: str, timeout_s: float) -> None:
        self._channel = peer_channel(target)
        self._stub = history_pb2_grpc.HistoryServiceStub(self._channel)
        self._timeout_s = timeout_s

    async def members(self, conversation_id: str, credentials: str) -> Sequence[str]:
        """User ids of the members (empty for the assistant), as the credentials' owner sees them."""
        try:
            reply = await self._stub.GetConversation(
                history_pb2.GetConversationRequest(conversation_id=conversation_id),
                metadata=forwarded(credentials),
                timeout=self._timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            raise relayed_error(exc, "history") from exc
        return [member.user_id for member in reply.conversation.members]

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()
