"""Search: the nearest points of a user's collection to a vector, or to a text embedded first."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from services.ingest.collections import Collections
from services.ingest.embedder import Caller, InferenceEmbedder
from services.ingest.errors import NoEmbeddingModel
from services.ingest.store.base import Hit, PayloadMatch, VectorQuery
from services.runtime.errors import FailedPrecondition, InvalidArgument

DEFAULT_LIMIT = 10


@dataclass(frozen=True)
class SearchAsk:
    """One Search request: a vector or a text, and what to keep."""

    collection: str
    vector: Sequence[float]
    text: str
    limit: int
    score_threshold: float | None
    matches: Sequence[PayloadMatch]
    with_vectors: bool


class Searcher:
    """Searches users' collections."""

    def __init__(self, collections: Collections, embedder: InferenceEmbedder) -> None:
        self._collections = collections
        self._embedder = embedder

    async def search(self, caller: Caller, ask: SearchAsk) -> list[Hit]:
        """The best points first, at most ``ask.limit`` (0: 10).

        Raises:
            CollectionNotFound, InvalidArgument (`vector` of the wrong length or not finite),
            NoEmbeddingModel (a text on a vectors-only collection), ResourceExhausted
            (inference's queue), StoreUnavailable.
        """
        record = await self._collections.get(caller.user_id, ask.collection)
        if ask.text:
            if not record.embedding_model:
                raise NoEmbeddingModel(ask.collection)
            embedded = await self._embedder.embed(caller, record.embedding_model, [ask.text])
            vector = embedded.vectors[0]
            if len(vector) != record.vector_size:
                raise FailedPrecondition(
                    f"{record.embedding_model!r} now embeds {len(vector)} dimensions; "
                    f"collection {ask.collection!r} takes {record.vector_size}"
                )
        else:
            vector = list(ask.vector)
            if len(vector) != record.vector_size:
                raise InvalidArgument("vector", f"has {len(vector)} floats, the collection takes {record.vector_size}")
            if not all(math.isfinite(x) for x in vector):
                raise InvalidArgument("vector", "holds NaN or infinity")
        query = VectorQuery(
            vector,
            ask.limit or DEFAULT_LIMIT,
            ask.score_threshold,
            tuple(ask.matches),
            ask.with_vectors,
        )
        return await self._collections.store.search(record.store_name, query)
