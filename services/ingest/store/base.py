"""The vector store interface: what the ingest service needs of Qdrant, whichever way it runs.

Two backends implement it: :mod:`.edge` (Qdrant's engine in-process through qdrant-edge-py,
one shard directory a collection) and :mod:`.server` (a Qdrant server or cluster through
qdrant-client over gRPC). One contract test suite (tests/services/ingest/test_store_contract.py)
runs against both.

Collections here are store names chosen by the ingest service (``c<uuid hex>``), never the
names users give; ownership lives in the collection catalog, not in the store.

Errors: :class:`~services.ingest.errors.CollectionNotFound` for a store name that does not
exist, :class:`~services.ingest.errors.StoreUnavailable` for anything the store failed to do
(a server down, a request refused); never the backend's own exceptions.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

DistanceName = Literal["cosine", "dot", "euclid"]
IndexKind = Literal["keyword", "integer", "float", "bool", "text", "uuid", "datetime"]
PointKey = int | str
"""A point id: an unsigned integer, or a UUID in its canonical lowercase text form."""

MAX_SCROLL_PAGE = 1024


@dataclass(frozen=True)
class CollectionSpec:
    """How a collection stores vectors.

    Attributes:
        vector_size: length of every vector.
        distance: how vectors are compared.
        payload_indexes: payload keys indexed up front, and the kind of each index.
    """

    vector_size: int
    distance: DistanceName
    payload_indexes: Mapping[str, IndexKind] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredPoint:
    """A point as the store keeps it."""

    id: PointKey
    vector: Sequence[float]
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PayloadMatch:
    """A payload key must hold (or, for an array, contain) this value."""

    key: str
    value: str | int | bool


@dataclass(frozen=True)
class VectorQuery:
    """A nearest-neighbour search.

    Attributes:
        vector: the query vector (the collection's length).
        limit: most points to return.
        score_threshold: COSINE/DOT: minimum score; EUCLID: maximum distance; None: no threshold.
        matches: payload matches every result satisfies.
        with_vectors: return each point's vector too.
    """

    vector: Sequence[float]
    limit: int
    score_threshold: float | None = None
    matches: Sequence[PayloadMatch] = ()
    with_vectors: bool = False


@dataclass(frozen=True, slots=True)
class Hit:
    """A point found by a search, best first."""

    id: PointKey
    score: float
    payload: Mapping[str, Any]
    vector: Sequence[float] | None = None


class VectorStore(abc.ABC):
    """Collections of points, durable once a call returns."""

    #: "embedded" or "server": how the points reach the store (see the worker's sinks).
    kind: str

    @abc.abstractmethod
    async def create_collection(self, name: str, spec: CollectionSpec) -> None:
        """Create an empty collection with its payload indexes (idempotent for the same spec)."""

    @abc.abstractmethod
    async def delete_collection(self, name: str) -> None:
        """Delete the collection and its points (no error if it is gone)."""

    @abc.abstractmethod
    async def collection_exists(self, name: str) -> bool:
        """Whether the store has this collection."""

    @abc.abstractmethod
    async def upsert(self, name: str, points: Sequence[StoredPoint]) -> None:
        """Insert or replace ``points``; returns once the store made them durable.

        The caller has checked every vector's length and finiteness.
        """

    @abc.abstractmethod
    async def search(self, name: str, query: VectorQuery) -> list[Hit]:
        """The nearest points to ``query.vector``, best first."""

    @abc.abstractmethod
    async def count(self, name: str) -> int:
        """Points in the collection (exact)."""

    @abc.abstractmethod
    async def scroll(self, name: str, offset: PointKey | None, limit: int) -> tuple[list[StoredPoint], PointKey | None]:
        """A page of points with vectors and payloads, in id order, and the offset of the next page."""

    @abc.abstractmethod
    async def set_bulk_mode(self, name: str, bulk: bool) -> None:
        """Defer index building while a big job writes (True), and build it again after (False)."""

    @abc.abstractmethod
    async def check(self) -> None:
        """Raise StoreUnavailable unless the store answers now (the health check)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and files."""
