"""Embed: a batch of texts -> L2-normalised vectors, on the embedding model's own llama instance."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.inference.errors import PromptTooLong
from services.inference.models import EmbeddingModel


@dataclass(frozen=True)
class Embeddings:
    """One unit vector per text, in order."""

    vectors: list[list[float]]
    dimensions: int
    model: str
    prompt_tokens: int


def normalise(vector: Sequence[float]) -> list[float]:
    """``vector`` scaled to unit length (a zero vector stays zero)."""
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else list(vector)


def _embed_blocking(model: EmbeddingModel, texts: Sequence[str]) -> Embeddings:
    llama = model.llama()
    limit = llama.n_ctx()
    batches: list[list[int]] = []
    for i, text in enumerate(texts):
        tokens = llama.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        if len(tokens) > limit:
            raise PromptTooLong(f"texts[{i}]", len(tokens), limit)
        batches.append(tokens)
    vectors: list[list[float]] = []
    for text in texts:
        # One text a call: llama-cpp-python's batch path mixes sequences in one context,
        # and a single text per decode keeps every vector independent of its neighbours.
        raw = llama.embed(text, normalize=False, truncate=False)
        vector: Sequence[float]
        if raw and isinstance(raw[0], list):
            # A model without pooling (SmolLM2) gives one vector per token: their mean is the
            # text's. (Taking the first row alone gave every text the BOS token's vector.)
            vector = np.asarray(raw, dtype=np.float64).mean(axis=0).tolist()
        else:
            vector = raw
        vectors.append(normalise(vector))
    return Embeddings(vectors, llama.n_embd(), model.name, sum(len(t) for t in batches))


async def embed(model: EmbeddingModel, user_id: str, texts: Sequence[str]) -> Embeddings:
    """Embed ``texts`` in the model's worker thread, one batch at a time (queue bounded like generation).

    Raises:
        QueueFull: the embedding queue is full.
        PromptTooLong: a text is longer than the context (names ``texts[i]``).
    """
    reservation = model.pool.reserve(user_id)
    slot = await model.pool.wait(reservation)
    if slot is None:
        raise asyncio.CancelledError()
    try:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(model.executor, _embed_blocking, model, texts)
    finally:
        model.pool.release(slot)
