"""A WatchPresence stream read in the background, so tests can wait for (or rule out) messages."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import grpc

from chatmesh.presence.v1 import presence_pb2 as pb


class Watcher:
    """Reads a WatchPresence stream into a queue until cancelled."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self.received: asyncio.Queue[pb.UserPresence] = asyncio.Queue()
        self.error: grpc.aio.AioRpcError | None = None
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for reply in self._call:
                await self.received.put(reply.presence)
        except grpc.aio.AioRpcError as exc:
            self.error = exc

    async def next(self, timeout_s: float = 5.0) -> pb.UserPresence:
        """The next presence sent (fails the test after ``timeout_s``)."""
        return await asyncio.wait_for(self.received.get(), timeout_s)

    async def take(self, count: int, timeout_s: float = 5.0) -> list[pb.UserPresence]:
        """The next ``count`` presences sent."""
        return [await self.next(timeout_s) for _ in range(count)]

    async def nothing_for(self, seconds: float) -> bool:
        """True if nothing more was sent for ``seconds``."""
        await asyncio.sleep(seconds)
        return self.received.empty()

    async def close(self) -> None:
        """Go away, as a client closing the stream does."""
        self._call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
