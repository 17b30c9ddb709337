"""The device's access and refresh tokens, and the one place that refreshes them.

Refresh tokens are single use and a reused one revokes the whole login, so refreshes are
serialised: concurrent calls that find the access token about to expire (or rejected)
wait for one Refresh instead of each sending the same refresh token.

Tokens never reach a log line or a ``repr``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import grpc

from chatmesh.session.v1 import session_pb2


@dataclass(frozen=True)
class Tokens:
    """An access/refresh token pair and when each stops working.

    Persist it (somewhere safe) to resume a login later with ``Client(..., tokens=...)``.
    Its ``repr`` leaves the secrets out.

    Attributes:
        access_token: Signed JWT sent as ``authorization: Bearer`` on every other RPC.
        access_expires_at: When ``access_token`` stops working (UTC).
        refresh_token: Opaque, single-use token for the next Refresh.
        refresh_expires_at: When ``refresh_token`` stops working if unused (UTC).
    """

    access_token: str = field(repr=False)
    access_expires_at: datetime
    refresh_token: str = field(repr=False)
    refresh_expires_at: datetime

    @classmethod
    def from_proto(cls, tokens: session_pb2.Tokens) -> Tokens:
        """The pair from a Register, Login or Refresh answer."""
        return cls(
            access_token=tokens.access_token,
            access_expires_at=tokens.access_expires_at.ToDatetime(tzinfo=UTC),
            refresh_token=tokens.refresh_token,
            refresh_expires_at=tokens.refresh_expires_at.ToDatetime(tzinfo=UTC),
        )

    def access_expires_within(self, seconds: float, now: datetime | None = None) -> bool:
        """True when the access token stops working in less than ``seconds`` from ``now``."""
        return self.access_expires_at - (now or datetime.now(UTC)) < timedelta(seconds=seconds)


Refresher = Callable[[str], Awaitable[Tokens]]


class TokenKeeper:
    """Holds the current tokens and refreshes them, once at a time.

    Args:
        refresher: Sends Refresh with a refresh token and returns the new pair.
        refresh_margin_s: Refresh an access token this many seconds before it expires.
        tokens: Tokens to start with (a saved login), or None until register/login.
    """

    def __init__(self, refresher: Refresher, refresh_margin_s: float, tokens: Tokens | None = None) -> None:
        self._refresher = refresher
        self._margin_s = refresh_margin_s
        self._tokens = tokens
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"TokenKeeper(logged_in={self._tokens is not None})"

    @property
    def tokens(self) -> Tokens | None:
        """The current pair, or None when not logged in."""
        return self._tokens

    def set(self, tokens: Tokens | None) -> None:
        """Replace the pair (after register, login or logout)."""
        self._tokens = tokens

    async def access_token(self) -> str | None:
        """An access token good for a while, refreshed first when it is about to expire; None when logged out."""
        tokens = self._tokens
        if tokens is None or not tokens.access_expires_within(self._margin_s):
            return tokens.access_token if tokens else None
        async with self._lock:
            current = self._tokens
            if current is not None and current.access_expires_within(self._margin_s):
                try:
                    current = await self._refresh_locked(current)
                except grpc.aio.AioRpcError:
                    # Early refresh is a courtesy: while the old token still works, use it.
                    if current.access_expires_within(0):
                        raise
            return current.access_token if current else None

    async def refresh(self, rejected_access_token: str | None = None) -> Tokens:
        """Trade the refresh token for a new pair and keep it.

        Args:
            rejected_access_token: The access token a call was refused with. When the
                current one differs, another call has refreshed meanwhile and its pair
                is returned without a second Refresh.

        Raises:
            LookupError: Not logged in.
            grpc.aio.AioRpcError: Refresh failed (UNAUTHENTICATED: log in again).
        """
        async with self._lock:
            current = self._tokens
            if current is None:
                raise LookupError("not logged in: register or log in first")
            if rejected_access_token is not None and current.access_token != rejected_access_token:
                return current
            return await self._refresh_locked(current)

    async def _refresh_locked(self, current: Tokens) -> Tokens:
        fresh = await self._refresher(current.refresh_token)
        self._tokens = fresh
        return fresh
