"""A bounded pool of generation slots with a bounded queue in front of it, fair between users.

Knows nothing of llama or gRPC: a slot is any object. At most ``len(slots)`` holders at
once, at most ``queue_size`` waiters, and per user:

* at most ``max_slots_per_user`` slots held at once (a user's next request waits even when
  a slot is free, so other users' requests can take it);
* at most ``max_queued_per_user`` requests waiting: one more is refused at once
  (:class:`UserQueueFull`), whatever the room in the queue, so a flooding user is answered
  RESOURCE_EXHAUSTED before anybody else is.

When a slot frees, it goes to the waiting user served least recently (among those under
their slot cap), that user's oldest request first: a user with ten queued requests does
not starve a user with one. When the whole queue is full, the user holding the largest
share (slots held plus requests queued) gives way: a newcomer with a smaller share evicts
that user's newest waiter (which ends with :class:`QueueFull`); otherwise the newcomer is
refused.

Runs on the event loop only; a worker thread hands its slot back through
``loop.call_soon_threadsafe(pool.release, slot)``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from services.inference.errors import QueueFull, QueueFullEvicted, UserQueueFull

T = TypeVar("T")


@dataclass(eq=False)
class Reservation(Generic[T]):
    """A place in the pool: holds a slot at once (``position`` 0) or waits, ``position`` in line (1: next)."""

    user_id: str
    position: int
    future: asyncio.Future[T | None] = field(repr=False)
    evicted: bool = False
    """Set when a smaller user took this waiter's place in a full queue (``wait`` raises QueueFull)."""


@dataclass
class _User:
    """What one user has in the pool now."""

    held: int = 0
    waiting: deque[Reservation[Any]] = field(default_factory=deque)
    served: int = 0
    """When this user was last given a slot (a counter; 0: never)."""

    @property
    def share(self) -> int:
        return self.held + len(self.waiting)


class SlotPool(Generic[T]):
    """Slots handed out one holder at a time, fairly between users."""

    def __init__(
        self,
        slots: Sequence[T],
        queue_size: int,
        retry_after_s: float,
        max_slots_per_user: int | None = None,
        max_queued_per_user: int | None = None,
    ) -> None:
        """Build a pool.

        Args:
            slots: the slots (each, say, its own llama context).
            queue_size: most waiters in all; beyond it the largest share gives way (QueueFull).
            retry_after_s: the retry hint QueueFull and UserQueueFull carry.
            max_slots_per_user: most slots one user holds at once (None: every slot).
            max_queued_per_user: most requests one user has waiting (None: the whole queue).
        """
        if not slots:
            raise ValueError("a pool needs at least one slot")
        self._size = len(slots)
        self._free: list[T] = list(slots)
        self._holders: dict[int, str] = {}  # id(slot) -> the user holding it
        self._users: dict[str, _User] = {}
        self._queued = 0
        self._queue_size = queue_size
        self._retry_after_s = retry_after_s
        self._slot_cap = max(1, min(self._size, max_slots_per_user or self._size))
        self._queue_cap = queue_size if max_queued_per_user is None else max_queued_per_user
        self._clock = itertools.count(1)

    @property
    def size(self) -> int:
        """Number of slots."""
        return self._size

    @property
    def busy(self) -> int:
        """Slots held now."""
        return self._size - len(self._free)

    @property
    def queued(self) -> int:
        """Waiters now."""
        return self._queued

    def held_by(self, user_id: str) -> int:
        """Slots ``user_id`` holds now."""
        user = self._users.get(user_id)
        return user.held if user is not None else 0

    def queued_for(self, user_id: str) -> int:
        """Requests of ``user_id`` waiting now."""
        user = self._users.get(user_id)
        return len(user.waiting) if user is not None else 0

    def reserve(self, user_id: str) -> Reservation[T]:
        """Take a free slot or a place in the queue.

        Raises:
            UserQueueFull: the caller already has ``max_queued_per_user`` requests waiting.
            QueueFull: every slot is held (or the caller holds their share) and the queue is
                full of requests of users holding no more than the caller would.
        """
        future: asyncio.Future[T | None] = asyncio.get_running_loop().create_future()
        user = self._users.setdefault(user_id, _User())
        if self._free and user.held < self._slot_cap:
            # Free slots exist only while every waiter's user is at their slot cap.
            future.set_result(self._grant(user_id, user, self._free.pop()))
            return Reservation(user_id, 0, future)
        if len(user.waiting) >= self._queue_cap:
            self._forget_if_idle(user_id)
            raise UserQueueFull(user.held, len(user.waiting), self._retry_after_s)
        if self._queued >= self._queue_size:
            victim = self._largest_waiting_share(exclude=user_id)
            if victim is None or self._users[victim].share <= user.share + 1:
                self._forget_if_idle(user_id)
                raise QueueFull(self._retry_after_s)
            self._evict_newest(victim)
        reservation: Reservation[T] = Reservation(user_id, self._queued + 1, future)  # 1: next in line
        user.waiting.append(reservation)
        self._queued += 1
        return reservation

    async def wait(self, reservation: Reservation[T]) -> T | None:
        """The reserved slot, once it is this reservation's turn; None when it was withdrawn.

        If the awaiting task is cancelled, the reservation is withdrawn (a slot it was
        already given goes back to the pool).

        Raises:
            QueueFull: the reservation was evicted from a full queue by a user with a smaller share.
        """
        try:
            slot = await asyncio.shield(reservation.future)
        except asyncio.CancelledError:
            self.withdraw(reservation)
            raise
        if slot is None and reservation.evicted:
            raise QueueFullEvicted(self._retry_after_s)
        return slot

    def withdraw(self, reservation: Reservation[T]) -> bool:
        """Leave the queue (a waiter) or give the slot back (a holder that never used it).

        Returns True when the reservation was still waiting.
        """
        future = reservation.future
        if future.done():
            slot = future.result()
            if slot is not None:
                # Given a slot it will never use: pass it on. Mark the future so a second
                # withdraw is a no-op.
                reservation.future = asyncio.get_running_loop().create_future()
                reservation.future.set_result(None)
                self.release(slot)
            return False
        user = self._users.get(reservation.user_id)
        if user is not None and reservation in user.waiting:
            user.waiting.remove(reservation)
            self._queued -= 1
            self._forget_if_idle(reservation.user_id)
        future.set_result(None)
        return True

    def release(self, slot: T) -> None:
        """Give ``slot`` back: to the next waiter (see the module's rule), or to the free list."""
        holder = self._holders.pop(id(slot), None)
        if holder is not None:
            user = self._users[holder]
            user.held -= 1
            self._forget_if_idle(holder)
        self._hand_out(slot)

    # -- internals -----------------------------------------------------------------------

    def _grant(self, user_id: str, user: _User, slot: T) -> T:
        user.held += 1
        user.served = next(self._clock)
        self._holders[id(slot)] = user_id
        return slot

    def _hand_out(self, slot: T) -> None:
        while True:
            chosen: tuple[str, _User] | None = None
            for user_id, user in self._users.items():
                if user.waiting and user.held < self._slot_cap and (chosen is None or user.served < chosen[1].served):
                    chosen = (user_id, user)
            if chosen is None:
                self._free.append(slot)
                return
            user_id, user = chosen
            reservation = user.waiting.popleft()
            self._queued -= 1
            if not reservation.future.done():
                reservation.future.set_result(self._grant(user_id, user, slot))
                return
            self._forget_if_idle(user_id)

    def _largest_waiting_share(self, exclude: str) -> str | None:
        """The user other than ``exclude`` with waiters and the largest share (ties: least recently served last)."""
        best: tuple[str, _User] | None = None
        for user_id, user in self._users.items():
            if user_id == exclude or not user.waiting:
                continue
            if best is None or (user.share, user.served) > (best[1].share, best[1].served):
                best = (user_id, user)
        return best[0] if best is not None else None

    def _evict_newest(self, user_id: str) -> None:
        user = self._users[user_id]
        reservation = user.waiting.pop()
        self._queued -= 1
        reservation.evicted = True
        if not reservation.future.done():
            reservation.future.set_result(None)
        self._forget_if_idle(user_id)

    def _forget_if_idle(self, user_id: str) -> None:
        user = self._users.get(user_id)
        if user is not None and not user.held and not user.waiting:
            del self._users[user_id]
