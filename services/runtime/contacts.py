"""Who are the caller's contacts (users sharing a conversation), by history's FilterContacts.

Asked by the services that show presence: session (whose presence a Connect stream may
follow) and presence (whose state a viewer may see). The caller's own ``authorization`` is
forwarded, so history answers for the caller and nobody else.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from chatmesh.history.v1 import history_pb2, history_pb2_grpc
from services.runtime.channels import peer_channel
from services.runtime.peers import forwarded, relayed_error


class HistoryContacts:
    """Asks history's FilterContacts which users share a conversation with the caller."""

    def __init__(self, target: str, timeout_s: float) -> None:
        self._channel = peer_channel(target)
        self._stub = history_pb2_grpc.HistoryServiceStub(self._channel)
        self._timeout_s = timeout_s

    async def contacts(self, user_ids: Sequence[str], credentials: str) -> list[str]:
        """Those of ``user_ids`` (canonical) who are the credentials' owner's contacts, in order."""
        if not user_ids:
            return []
        try:
            reply = await self._stub.FilterContacts(
                history_pb2.FilterContactsRequest(user_ids=list(user_ids)),
                metadata=forwarded(credentials),
                timeout=self._timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            raise relayed_error(exc, "history") from None
        return list(reply.user_ids)

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()
