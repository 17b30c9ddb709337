"""Points and documents as the ingest service takes them: checks, ids, payloads.

Knows nothing of gRPC: the servicer and the job readers build :class:`PointInput` and
:class:`DocumentInput`, and this module checks them against a collection (vector length,
finite components, payload size) and turns documents into passages to embed.

Ids: a point's own id, else one derived from where it came from (UUIDv5 of the source
and position), so a redelivered work item overwrites its points instead of duplicating
them. A document without an id gets the UUIDv5 of its text; a document split into several
passages gives each passage the UUIDv5 of ``<document id>#<passage>``.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.ingest.chunking import split_passages
from services.ingest.store.base import PointKey, StoredPoint
from services.runtime.errors import InvalidArgument

ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "chatmesh:ingest")
TEXT_KEY = "text"


@dataclass(frozen=True, slots=True)
class PointInput:
    """A point to write: its id, vector and payload (and the payload's serialised size)."""

    id: PointKey
    vector: Sequence[float]
    payload: Mapping[str, Any]
    payload_bytes: int


@dataclass(frozen=True, slots=True)
class DocumentInput:
    """A document to embed: an optional id, its text and extra payload."""

    id: PointKey | None
    text: str
    metadata: Mapping[str, Any]
    metadata_bytes: int


@dataclass(frozen=True, slots=True)
class Passage:
    """One passage of a document, ready to embed: its point id, text and payload."""

    id: PointKey
    text: str
    payload: dict[str, Any]

    @property
    def embed_text(self) -> str:
        """The text as it is embedded: line breaks and runs of spaces as single spaces."""
        return " ".join(self.text.split())


def derived_id(source: str, position: int) -> str:
    """The id of the item at ``position`` of ``source`` (stable across retries and workers)."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{source}#{position}"))


def text_id(text: str) -> str:
    """The id of a document given without one: the UUIDv5 of its text."""
    return str(uuid.uuid5(ID_NAMESPACE, text))


def point_problem(point: PointInput, vector_size: int, max_payload_bytes: int) -> tuple[str, str] | None:
    """What is wrong with ``point`` for a collection of ``vector_size``: (field, problem), or None."""
    if len(point.vector) != vector_size:
        return "vector", f"has {len(point.vector)} floats, the collection takes {vector_size}"
    if not all(math.isfinite(x) for x in point.vector):
        return "vector", "holds NaN or infinity"
    if point.payload_bytes > max_payload_bytes:
        return "payload", f"is {point.payload_bytes} bytes serialised, more than {max_payload_bytes}"
    return None


def checked_points(
    points: Sequence[PointInput], vector_size: int, max_payload_bytes: int, field: str = "points"
) -> list[StoredPoint]:
    """``points`` as store points, or InvalidArgument naming the first bad one (``points[3].vector``)."""
    for i, point in enumerate(points):
        check_vector_length(f"{field}[{i}].vector", len(point.vector), vector_size)
        check_payload_size(f"{field}[{i}].payload", point.payload_bytes, max_payload_bytes)
    if points:
        matrix = np.asarray([p.vector for p in points], dtype=np.float32)
        check_finite(matrix, field)
        rows = matrix.tolist()
        return [StoredPoint(p.id, rows[i], p.payload) for i, p in enumerate(points)]
    return []


def check_vector_length(field: str, length: int, vector_size: int) -> None:
    """InvalidArgument naming ``field`` unless a vector of ``length`` fits a collection of ``vector_size``."""
    if length != vector_size:
        raise InvalidArgument(field, f"has {length} floats, the collection takes {vector_size}")


def check_payload_size(field: str, size: int, max_payload_bytes: int) -> None:
    """InvalidArgument naming ``field`` if a payload of ``size`` serialised bytes is too large."""
    if size > max_payload_bytes:
        raise InvalidArgument(field, f"is {size} bytes serialised, more than {max_payload_bytes}")


def check_finite(matrix: np.ndarray, field: str = "points") -> None:
    """InvalidArgument naming the first row of ``matrix`` (``points[3].vector``) with a NaN or infinity."""
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        raise InvalidArgument(f"{field}[{int(np.argmin(finite))}].vector", "holds NaN or infinity")


def checked_documents(documents: Sequence[DocumentInput], max_payload_bytes: int, field: str = "documents") -> None:
    """InvalidArgument naming the first document whose metadata is too large."""
    for i, doc in enumerate(documents):
        if doc.metadata_bytes > max_payload_bytes:
            raise InvalidArgument(
                f"{field}[{i}].metadata", f"is {doc.metadata_bytes} bytes serialised, more than {max_payload_bytes}"
            )


def passages_of(
    document: DocumentInput, max_chars: int, overlap_chars: int, extra: Mapping[str, Any] | None = None
) -> list[Passage]:
    """The passages of ``document``, each with its id and payload ({...metadata, "text": passage}).

    A document that fits in one passage keeps its id (or the UUIDv5 of its text); longer ones
    also record ``document_id`` and ``passage`` (0, 1, ...) in each passage's payload.
    """
    texts = split_passages(document.text, max_chars, overlap_chars)
    base: PointKey = document.id if document.id is not None else text_id(document.text)
    payload_base = {**document.metadata, **(extra or {})}
    if len(texts) == 1:
        return [Passage(base, texts[0], {**payload_base, TEXT_KEY: texts[0]})]
    return [
        Passage(
            str(uuid.uuid5(ID_NAMESPACE, f"{base}#{i}")),
            text,
            {**payload_base, TEXT_KEY: text, "document_id": str(base), "passage": i},
        )
        for i, text in enumerate(texts)
    ]
