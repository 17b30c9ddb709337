"""WatchPresence subscribers, indexed by the users they watch.

One index per replica: a change of a user reaches only the watches of that user, in
O(watchers of that user), however many watches are open. Each watch holds at most one
pending change per watched user (the latest), so a slow reader costs bounded memory
and still ends up with the current state.

Knows nothing of gRPC.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from services.presence.errors import TooManyWatches
from services.presence.folder import Presence, PresenceState


class PresenceWatch:
    """One subscriber's pending changes, and what it was last sent of each user."""

    def __init__(self, user_ids: Sequence[str]) -> None:
        self.user_ids = tuple(user_ids)
        self._pending: dict[str, Presence] = {}
        self._sent: dict[str, tuple[PresenceState, int]] = {}
        self._ready = asyncio.Event()

    def offer(self, presence: Presence) -> None:
        """Queue a change (replacing a pending one of the same user)."""
        self._pending.pop(presence.user_id, None)
        self._pending[presence.user_id] = presence
        self._ready.set()

    def mark_sent(self, presences: Sequence[Presence]) -> Sequence[Presence]:
        """Note that ``presences`` are being sent (the first states); returns them."""
        for presence in presences:
            self._sent[presence.user_id] = presence.change_key
        return presences

    async def changes(self) -> list[Presence]:
        """Wait for changes the subscriber has not seen yet and take them, oldest first.

        A change equal to what was last sent (the first state already showed it) is skipped.
        """
        while True:
            while not self._pending:
                self._ready.clear()
                await self._ready.wait()
            batch = [p for p in self._pending.values() if self._sent.get(p.user_id) != p.change_key]
            self._pending.clear()
            self._ready.clear()
            if batch:
                return list(self.mark_sent(batch))


class WatchIndex:
    """Open watches by watched user."""

    def __init__(self, max_watches: int) -> None:
        self._max = max_watches
        self._by_user: dict[str, set[PresenceWatch]] = {}
        self._open: set[PresenceWatch] = set()

    def open(self, user_ids: Sequence[str]) -> PresenceWatch:
        """Register a watch of ``user_ids`` (possibly none the caller may see); raise TooManyWatches at the limit."""
        if len(self._open) >= self._max:
            raise TooManyWatches(self._max)
        watch = PresenceWatch(user_ids)
        for user_id in watch.user_ids:
            self._by_user.setdefault(user_id, set()).add(watch)
        self._open.add(watch)
        return watch

    def close(self, watch: PresenceWatch) -> None:
        """Unregister a watch (idempotent)."""
        if watch not in self._open:
            return
        self._open.discard(watch)
        for user_id in watch.user_ids:
            watchers = self._by_user.get(user_id)
            if watchers is not None:
                watchers.discard(watch)
                if not watchers:
                    del self._by_user[user_id]

    def deliver(self, presence: Presence) -> int:
        """Hand a change to every watch of its user; how many got it."""
        watchers = self._by_user.get(presence.user_id, ())
        for watch in watchers:
            watch.offer(presence)
        return len(watchers)

    @property
    def open_watches(self) -> int:
        """Watches currently open."""
        return len(self._open)

    @property
    def watched_users(self) -> int:
        """Distinct users watched."""
        return len(self._by_user)
