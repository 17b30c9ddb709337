"""Background tasks ended on close: cancel them all, then wait for each to finish."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("chatmesh.tasks")


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait until every one has ended.

    All are cancelled before any is awaited, so they wind down together. A task that ended
    with an error other than its cancellation is logged, not raised: closing goes on. If
    the caller is cancelled meanwhile, that propagates at once (the tasks, already
    cancelled, finish on their own).
    """
    pending = list(tasks)
    for task in pending:
        task.cancel()
    if not pending:
        return
    await asyncio.wait(pending)
    for task in pending:
        if not task.cancelled() and (error := task.exception()) is not None:
            log.warning("background task failed before it was cancelled", exc_info=error, extra={"task": repr(task)})
