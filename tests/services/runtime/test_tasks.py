"""cancel_and_wait: what a close path relies on when it ends its background tasks."""

from __future__ import annotations

import asyncio
import logging

import pytest

from services.runtime.tasks import cancel_and_wait


async def test_every_task_is_cancelled_and_has_ended_when_it_returns() -> None:
    cleaned: list[int] = []

    async def loop(n: int) -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.01)  # cleanup that itself awaits
            cleaned.append(n)

    tasks = [asyncio.create_task(loop(n)) for n in range(5)]
    await asyncio.sleep(0)
    await cancel_and_wait(tasks)
    assert all(task.done() for task in tasks)
    assert sorted(cleaned) == [0, 1, 2, 3, 4]


async def test_a_task_that_failed_is_logged_and_the_others_are_still_ended(caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise RuntimeError("the loop broke")

    async def forever() -> None:
        await asyncio.sleep(3600)

    failed = asyncio.create_task(broken())
    await asyncio.sleep(0)  # it fails before the close
    running = asyncio.create_task(forever())
    with caplog.at_level(logging.WARNING, logger="chatmesh.tasks"):
        await cancel_and_wait([failed, running])
    assert running.cancelled()
    assert [r.exc_info[1].args for r in caplog.records if r.exc_info] == [("the loop broke",)]


async def test_the_caller_being_cancelled_is_not_swallowed() -> None:
    holding = True

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if not holding:
                    raise
                # ignores its first cancellation: the close waits on it

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    closing = asyncio.create_task(cancel_and_wait([task]))
    await asyncio.sleep(0.01)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    holding = False
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_nothing_to_wait_for() -> None:
    await cancel_and_wait([])
