"""Coalescing presence changes: at most one per user per window, with the latest state.

The first change of a user opens a window of ``window_s``; more changes inside it only
mark the user again; when the window ends the user is *due* and the caller announces
whatever the state is then (nothing, if it flapped back). The window is not extended
by later changes, so a user flapping forever is still announced once a window.

Knows nothing of gRPC or NATS; time is passed in (monotonic seconds).
"""

from __future__ import annotations

from collections import deque


class ChangeCoalescer:
    """Users with a change pending, in the order their windows end."""

    def __init__(self, window_s: float) -> None:
        self._window = window_s
        self._windows: deque[tuple[float, str]] = deque()
        self._pending: set[str] = set()

    def touch(self, user_id: str, now: float) -> bool:
        """Note a change of ``user_id``; True if it opened a new window."""
        if user_id in self._pending:
            return False
        self._pending.add(user_id)
        # Windows all last as long, so the deque stays ordered by deadline.
        self._windows.append((now + self._window, user_id))
        return True

    def next_deadline(self) -> float | None:
        """When the earliest open window ends; None if none is open."""
        return self._windows[0][0] if self._windows else None

    def due(self, now: float) -> list[str]:
        """Users whose window ended by ``now`` (their windows close)."""
        users: list[str] = []
        while self._windows and self._windows[0][0] <= now:
            _, user_id = self._windows.popleft()
            self._pending.discard(user_id)
            users.append(user_id)
        return users

    def __len__(self) -> int:
        return len(self._pending)
