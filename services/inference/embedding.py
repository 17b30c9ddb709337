"""Embed: a batch of texts -> L2-normalised vectors, on the embedding model's own llama instance.

A model with its own pooling (BERT-style embedding models: mean, CLS) gives one vector per
text, used as it is. A generative model without pooling (the bundled SmolLM2) gives one
vector per token; for those the text is put in the PromptEOL template (Jiang et al., 2023,
"Scaling Sentence Embeddings with Large Language Models": ``This sentence : "<text>" means
in one word:"``) and the last token's vector is the text's, which retrieves far better than
a mean over the tokens (on ingest's passage-retrieval check, 7 of 8 queries found their
passage against 4 of 8 for the mean).
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

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


PROMPT_EOL = 'This sentence : "{text}" means in one word:"'
_POOLING_NONE = 0  # llama.cpp's LLAMA_POOLING_TYPE_NONE


class EmbedCancelled(Exception):
    """The caller went away: the texts left were not embedded."""


def _embed_blocking(model: EmbeddingModel, texts: Sequence[str], cancel: threading.Event) -> Embeddings:
    llama = model.llama()
    limit = llama.n_ctx()
    if int(llama.pooling_type()) == _POOLING_NONE:
        texts = [PROMPT_EOL.format(text=text) for text in texts]
    batches: list[list[int]] = []
    for i, text in enumerate(texts):
        tokens = llama.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        if len(tokens) > limit:
            raise PromptTooLong(f"texts[{i}]", len(tokens), limit)
        batches.append(tokens)
    vectors: list[list[float]] = []
    for text in texts:
        if cancel.is_set():
            raise EmbedCancelled()
        # One text a call: llama-cpp-python's batch path mixes sequences in one context,
        # and a single text per decode keeps every vector independent of its neighbours.
        raw = llama.embed(text, normalize=False, truncate=False)
        vector: Sequence[float]
        if raw and isinstance(raw[0], list):
            # One vector per token (no pooling): the last one, after the PromptEOL template.
            vector = list(raw[-1])
        else:
            vector = raw
        vectors.append(normalise(vector))
    return Embeddings(vectors, llama.n_embd(), model.name, sum(len(t) for t in batches))


async def embed(model: EmbeddingModel, user_id: str, texts: Sequence[str]) -> Embeddings:
    """Embed ``texts`` in the model's worker thread, one batch at a time (queue bounded like generation).

    A caller that goes away stops the batch at its next text; the slot is handed on only
    once the worker thread is done with it (the next batch never waits behind a dead one
    while the pool counts it as running).

    Raises:
        UserQueueFull: the caller has their most Embed requests waiting.
        QueueFull: the embedding queue is full.
        PromptTooLong: a text is longer than the context (names ``texts[i]``).
    """
    reservation = model.pool.reserve(user_id)
    slot = await model.pool.wait(reservation)
    if slot is None:
        raise asyncio.CancelledError()
    loop = asyncio.get_running_loop()
    cancel = threading.Event()
    work = loop.run_in_executor(model.executor, _embed_blocking, model, texts, cancel)
    work.add_done_callback(lambda done: _finished(model, slot, done))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        cancel.set()
        raise


def _finished(model: EmbeddingModel, slot: int, done: asyncio.Future[Embeddings]) -> None:
    model.pool.release(slot)
    if not done.cancelled():
        done.exception()  # retrieved: a cancelled caller's EmbedCancelled is nobody's error
