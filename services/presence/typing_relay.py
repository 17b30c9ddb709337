"""Typing indicators: check the caller is a member, tell the other members.

Membership is history's to decide: a :class:`MembershipPort` asks it (with the
caller's own credentials, so history applies its own check) and the answer is
reused for a short while per (user, conversation), so a user typing costs one
history call per cache period, not one per keystroke burst.

Knows nothing of gRPC or NATS.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from services.presence.errors import TypingTooFrequent
from services.runtime.ratelimit import RateLimiter


class MembershipPort(Protocol):
    """Who is in a conversation, as the caller may see it."""

    async def members(self, conversation_id: str, credentials: str) -> Sequence[str]:
        """User ids of the conversation's members (the assistant as an empty string).

        Raises:
            NotFound: no such conversation (history's verdict, relayed).
            PermissionDenied: the caller (whose ``credentials`` these are) is not in it.
            Unavailable: the answer could not be had.
        """
        ...


@dataclass(frozen=True)
class TypingSignal:
    """A member started or stopped typing."""

    conversation_id: str
    user_id: str
    typing: bool
    expires_in_ms: int


class TypingSink(Protocol):
    """Where typing signals go (each recipient's live events)."""

    async def typing(self, recipients: Sequence[str], signal: TypingSignal) -> None:
        """Deliver ``signal`` to every user in ``recipients``."""
        ...


class MembershipCache:
    """Confirmed memberships, reused for ``ttl_s`` (bounded, least recently used out)."""

    def __init__(self, ttl_s: float, max_entries: int) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._entries: OrderedDict[tuple[str, str], tuple[tuple[str, ...], float]] = OrderedDict()

    def get(self, user_id: str, conversation_id: str, now: float) -> tuple[str, ...] | None:
        """The members if a fresh answer is held."""
        entry = self._entries.get((user_id, conversation_id))
        if entry is None:
            return None
        members, expires_at = entry
        if expires_at <= now:
            del self._entries[(user_id, conversation_id)]
            return None
        self._entries.move_to_end((user_id, conversation_id))
        return members

    def put(self, user_id: str, conversation_id: str, members: Sequence[str], now: float) -> None:
        """Remember a confirmed membership."""
        if self._ttl <= 0:
            return
        self._entries[(user_id, conversation_id)] = (tuple(members), now + self._ttl)
        self._entries.move_to_end((user_id, conversation_id))
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)


class TypingRelay:
    """SetTyping's use case."""

    def __init__(
        self,
        membership: MembershipPort,
        sink: TypingSink,
        limiter: RateLimiter,
        cache: MembershipCache,
        ttl_ms: int,
    ) -> None:
        self._membership = membership
        self._sink = sink
        self._limiter = limiter
        self._cache = cache
        self._ttl_ms = ttl_ms

    async def set_typing(
        self, user_id: str, conversation_id: str, typing: bool, credentials: str, now: float
    ) -> TypingSignal:
        """Tell the other members of ``conversation_id`` that ``user_id`` is (not) typing.

        Args:
            user_id: the caller.
            conversation_id: the conversation.
            typing: True while typing; False clears the indicator at once.
            credentials: the caller's credentials, handed to the membership check as is.
            now: monotonic seconds (rate limit and cache).

        Returns:
            The signal sent (``expires_in_ms`` is 0 when ``typing`` is False).

        Raises:
            TypingTooFrequent: over the per-user rate.
            NotFound, PermissionDenied, Unavailable: from the membership check.
        """
        wait = self._limiter.acquire(user_id, now)
        if wait:
            raise TypingTooFrequent(wait)
        members = self._cache.get(user_id, conversation_id, now)
        if members is None:
            members = tuple(await self._membership.members(conversation_id, credentials))
            self._cache.put(user_id, conversation_id, members, now)
        signal = TypingSignal(conversation_id, user_id, typing, self._ttl_ms if typing else 0)
        # The assistant (no user id) has no devices to tell; the caller's own devices know.
        recipients = sorted({m for m in members if m and m != user_id})
        if recipients:
            await self._sink.typing(recipients, signal)
        return signal
