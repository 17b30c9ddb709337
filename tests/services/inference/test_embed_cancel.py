"""Embed's batch when its caller goes away, on a stand-in llama (no model): it stops, and hands the slot on after."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from services.inference.embedding import embed
from services.inference.slots import SlotPool


class SlowLlama:
    """Embeds one text when told to; counts what it embedded."""

    def __init__(self) -> None:
        self.embedded: list[str] = []
        self.first_started = threading.Event()
        self.proceed = threading.Event()

    def n_ctx(self) -> int:
        return 512

    def n_embd(self) -> int:
        return 2

    def pooling_type(self) -> int:
        return 1  # mean: texts are embedded as they are

    def tokenize(self, text: bytes, add_bos: bool, special: bool) -> list[int]:
        return [1, 2]

    def embed(self, text: str, normalize: bool, truncate: bool) -> list[float]:
        self.first_started.set()
        self.proceed.wait(60)
        self.embedded.append(text)
        return [3.0, 4.0]


async def test_a_cancelled_batch_stops_at_its_next_text_and_the_next_caller_waits_for_the_thread() -> None:
    llama = SlowLlama()
    executor = ThreadPoolExecutor(max_workers=1)
    model = SimpleNamespace(name="m", pool=SlotPool([0], 4, 1.0), executor=executor, llama=lambda: llama)
    try:
        gone = asyncio.create_task(embed(model, "a", ["first"] * 50))  # type: ignore[arg-type]
        await asyncio.to_thread(llama.first_started.wait, 60)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert model.pool.busy == 1  # the thread is still inside its text: the slot is not handed on yet
        nxt = asyncio.create_task(embed(model, "b", ["second"]))  # type: ignore[arg-type]
        await asyncio.sleep(0)
        assert model.pool.queued == 1
        llama.proceed.set()
        result = await asyncio.wait_for(nxt, 60)
        assert result.vectors == [[0.6, 0.8]]
        assert llama.embedded == ["first", "second"]  # the cancelled batch stopped after the text it was in
        assert model.pool.busy == 0
    finally:
        llama.proceed.set()
        executor.shutdown(wait=True)
