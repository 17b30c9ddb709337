"""Which user ids are accounts: session's LookupUsers, asked with the caller's token.

Accounts are never deleted, so an id once found stays found: positive answers are
remembered (a bounded LRU); an unknown id is asked again each time.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

import grpc

from chatmesh.session.v1 import session_pb2, session_pb2_grpc
from services.runtime.channels import peer_channel
from services.runtime.peers import forwarded, relayed_error


class UserDirectory(Protocol):
    """Says whether a user id names an account."""

    async def exists(self, user_id: str, credentials: str) -> bool:
        """True if ``user_id`` (canonical) is an account, as the credentials' owner may look it up."""
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...


class SessionDirectory:
    """UserDirectory over session's LookupUsers (the caller's ``authorization`` forwarded)."""

    def __init__(self, target: str, timeout_s: float, cache_size: int) -> None:
        self._channel = peer_channel(target)
        self._stub = session_pb2_grpc.SessionServiceStub(self._channel)
        self._timeout_s = timeout_s
        self._cache_size = cache_size
        self._known: OrderedDict[str, None] = OrderedDict()

    async def exists(self, user_id: str, credentials: str) -> bool:
        """True if session knows ``user_id``; UNAVAILABLE (and the peer's own verdicts) passed on."""
        if user_id in self._known:
            self._known.move_to_end(user_id)
            return True
        try:
            reply = await self._stub.LookupUsers(
                session_pb2.LookupUsersRequest(user_ids=[user_id]),
                metadata=forwarded(credentials),
                timeout=self._timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            raise relayed_error(exc, "session") from None
        found = any(u.user_id == user_id for u in reply.users)
        if found:
            self._known[user_id] = None
            while len(self._known) > self._cache_size:
                self._known.popitem(last=False)
        return found

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()
