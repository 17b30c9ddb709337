"""The slot pool's fairness between users, without a model: slots are plain strings."""

from __future__ import annotations

import asyncio

import pytest

from services.inference.errors import QueueFull, UserQueueFull
from services.inference.slots import Reservation, SlotPool


def pool(slots: int = 1, queue: int = 8, per_user_slots: int | None = None, per_user_queue: int | None = None):  # type: ignore[no-untyped-def]
    return SlotPool([f"slot-{i}" for i in range(slots)], queue, 1.5, per_user_slots, per_user_queue)


def granted(reservation: Reservation[str]) -> str | None:
    """The slot the reservation holds, or None while it waits (or was withdrawn)."""
    return reservation.future.result() if reservation.future.done() else None


async def test_a_user_over_their_queue_cap_is_refused_while_the_queue_has_room() -> None:
    p = pool(slots=1, queue=8, per_user_queue=2)
    assert granted(p.reserve("a")) == "slot-0"
    p.reserve("a")
    p.reserve("a")
    with pytest.raises(UserQueueFull) as info:
        p.reserve("a")
    assert info.value.retry_after_s == 1.5
    assert "1 requests running and 2 waiting" in str(info.value)
    b = p.reserve("b")  # another user still gets in line
    assert b.position == 3 and p.queued == 3


async def test_one_user_holds_at_most_their_slots_and_the_rest_stay_for_others() -> None:
    p = pool(slots=2, per_user_slots=1)
    assert granted(p.reserve("a")) is not None
    second_of_a = p.reserve("a")
    assert granted(second_of_a) is None and p.busy == 1  # a slot is free, but not for a
    b = p.reserve("b")
    assert granted(b) is not None and p.busy == 2


async def test_a_freed_slot_goes_to_the_user_served_least_recently() -> None:
    p = pool(slots=1, queue=8)
    running = p.reserve("a")
    a_waiters = [p.reserve("a") for _ in range(3)]
    b = p.reserve("b")
    p.release(granted(running))  # type: ignore[arg-type]
    assert granted(b) == "slot-0"  # b, who has had nothing, before a's second request
    assert all(granted(w) is None for w in a_waiters)
    p.release("slot-0")
    assert granted(a_waiters[0]) == "slot-0"  # then a's oldest


async def test_a_user_at_their_slot_cap_is_skipped_until_they_release() -> None:
    p = pool(slots=2, per_user_slots=1)
    a1, b1 = p.reserve("a"), p.reserve("b")
    a2 = p.reserve("a")
    p.release(granted(b1))  # type: ignore[arg-type]
    assert granted(a2) is None and p.busy == 1  # a still holds one: the slot stays free
    c = p.reserve("c")
    assert granted(c) is not None
    p.release(granted(a1))  # type: ignore[arg-type]
    assert granted(a2) is not None


async def test_a_full_queue_evicts_the_newest_waiter_of_the_largest_share_not_the_newcomer() -> None:
    p = pool(slots=1, queue=3, per_user_queue=3)
    p.reserve("a")
    a_waiters = [p.reserve("a") for _ in range(3)]
    assert p.queued == 3
    b = p.reserve("b")  # the queue is full, of a's requests: a's newest gives way
    assert b.position >= 1 and p.queued == 3
    assert a_waiters[-1].evicted
    with pytest.raises(QueueFull) as info:
        await p.wait(a_waiters[-1])
    assert info.value.retry_after_s == 1.5
    assert not a_waiters[0].evicted and not a_waiters[1].evicted


async def test_a_full_queue_refuses_the_newcomer_when_nobody_holds_more() -> None:
    p = pool(slots=1, queue=2, per_user_queue=2)
    p.reserve("a")
    p.reserve("b")
    p.reserve("c")
    with pytest.raises(QueueFull):
        p.reserve("d")  # a holds 1, b and c wait 1 each: d (1 once in) is no smaller
    with pytest.raises(QueueFull):
        p.reserve("b")  # b would hold the largest share itself


async def test_a_cancelled_waiter_leaves_the_queue_and_a_user_with_nothing_is_forgotten() -> None:
    p = pool(slots=1, queue=4)
    running = p.reserve("a")
    waiter = p.reserve("b")
    task = asyncio.create_task(p.wait(waiter))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert p.queued == 0 and p.queued_for("b") == 0
    p.release(granted(running))  # type: ignore[arg-type]
    assert p.busy == 0 and p.held_by("a") == 0
    assert not p._users  # noqa: SLF001 - nothing kept for users who have nothing here


async def test_twenty_requests_of_one_user_leave_room_for_another() -> None:
    p = pool(slots=1, queue=4, per_user_slots=1, per_user_queue=2)
    admitted, refused = 0, 0
    for _ in range(20):
        try:
            p.reserve("a")
            admitted += 1
        except UserQueueFull:
            refused += 1
    assert (admitted, refused) == (3, 17)
    b = p.reserve("b")
    assert granted(b) is None and p.queued == 3
    p.release("slot-0")
    assert granted(b) == "slot-0"  # b goes first: a was served last
