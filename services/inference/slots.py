"""A bounded pool of generation slots with a bounded, per-user fair queue in front of it.

Knows nothing of llama or gRPC: a slot is any object. At most ``len(slots)`` holders at
once; at most ``queue_size`` waiters; when a slot frees, the next waiter is taken
round-robin by user (a user with ten queued requests does not starve a user with one).
Runs on the event loop only; a worker thread hands its slot back through
``loop.call_soon_threadsafe(pool.release, slot)``.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from services.inference.errors import QueueFull

T = TypeVar("T")


@dataclass(eq=False)
class Reservation(Generic[T]):
    """A place in the pool: holds a slot at once (``position`` 0) or waits, ``position`` in line (1: next)."""

    user_id: str
    position: int
    future: asyncio.Future[T | None] = field(repr=False)


class SlotPool(Generic[T]):
    """Slots handed out one holder at a time, waiters served round-robin by user."""

    def __init__(self, slots: Sequence[T], queue_size: int, retry_after_s: float) -> None:
        """Build a pool.

        Args:
            slots: the slots (each, say, its own llama context).
            queue_size: most waiters; one more gets QueueFull.
            retry_after_s: the retry hint QueueFull carries.
        """
        if not slots:
            raise ValueError("a pool needs at least one slot")
        self._size = len(slots)
        self._free: list[T] = list(slots)
        self._waiting: OrderedDict[str, deque[Reservation[T]]] = OrderedDict()
        self._queued = 0
        self._queue_size = queue_size
        self._retry_after_s = retry_after_s

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

    def reserve(self, user_id: str) -> Reservation[T]:
        """Take a free slot or a place in the queue.

        Raises:
            QueueFull: every slot is held and the queue is full.
        """
        future: asyncio.Future[T | None] = asyncio.get_running_loop().create_future()
        if self._free and not self._queued:
            future.set_result(self._free.pop())
            return Reservation(user_id, 0, future)
        if self._queued >= self._queue_size:
            raise QueueFull(self._retry_after_s)
        reservation = Reservation(user_id, self._queued + 1, future)  # 1: next in line
        self._waiting.setdefault(user_id, deque()).append(reservation)
        self._queued += 1
        return reservation

    async def wait(self, reservation: Reservation[T]) -> T | None:
        """The reserved slot, once it is this reservation's turn; None when it was withdrawn.

        If the awaiting task is cancelled, the reservation is withdrawn (a slot it was
        already given goes back to the pool).
        """
        try:
            return await asyncio.shield(reservation.future)
        except asyncio.CancelledError:
            self.withdraw(reservation)
            raise

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
        queue = self._waiting.get(reservation.user_id)
        if queue is not None and reservation in queue:
            queue.remove(reservation)
            self._queued -= 1
            if not queue:
                del self._waiting[reservation.user_id]
        future.set_result(None)
        return True

    def release(self, slot: T) -> None:
        """Give ``slot`` back: to the next user's oldest waiter, round-robin, or to the free list."""
        while self._waiting:
            user_id, queue = self._waiting.popitem(last=False)
            reservation = queue.popleft()
            self._queued -= 1
            if queue:
                self._waiting[user_id] = queue  # back of the rotation
            if not reservation.future.done():
                reservation.future.set_result(slot)
                return
        self._free.append(slot)
