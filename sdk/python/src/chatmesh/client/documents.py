"""What ``ingest`` and ``search`` take and give: documents, points, progress, results and hits.

Plain dataclasses for the app's side, and their conversion to and from the contract's
messages (``chatmesh.ingest.v1``): ids, payloads as JSON objects, payload filters.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from google.protobuf import json_format, struct_pb2

from chatmesh.ingest.v1 import ingest_pb2 as pb

#: A point id: a UUID (text or ``uuid.UUID``) or an unsigned integer.
PointIdLike: TypeAlias = str | int | uuid.UUID
#: A payload filter value: Search matches strings exactly, integers and booleans by value.
MatchValue: TypeAlias = str | int | bool
DistanceName: TypeAlias = Literal["cosine", "dot", "euclid"]
FormatName: TypeAlias = Literal["jsonl", "csv", "parquet", "text"]

DISTANCES: dict[str, pb.Distance] = {
    "cosine": pb.DISTANCE_COSINE,
    "dot": pb.DISTANCE_DOT,
    "euclid": pb.DISTANCE_EUCLID,
}
FORMATS: dict[str, pb.SourceFormat] = {
    "jsonl": pb.SOURCE_FORMAT_JSONL,
    "csv": pb.SOURCE_FORMAT_CSV,
    "parquet": pb.SOURCE_FORMAT_PARQUET,
    "text": pb.SOURCE_FORMAT_TEXT,
}


@dataclass(frozen=True)
class Document:
    """A text to embed into a point.

    Attributes:
        text: 1 to 8,192 characters; stored in the payload under ``"text"``.
        metadata: Extra payload stored next to it (``{"source": "faq.md", "lang": "en"}``).
        id: Its point id; None: a UUID the server derives from the text, so the same text
            ingested again replaces its point.
    """

    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    id: PointIdLike | None = None


@dataclass(frozen=True)
class Point:
    """A vector with its payload.

    Attributes:
        vector: Exactly the collection's ``vector_size`` finite floats.
        payload: Any JSON object (at most 64 KiB serialised), returned by search.
        id: Its id; upserting an existing id replaces that point. None: a fresh UUID
            (ingesting the same points again then adds copies: give ids to replace).
    """

    vector: Sequence[float]
    payload: Mapping[str, Any] = field(default_factory=dict)
    id: PointIdLike | None = None


#: What ``ingest`` takes in a list: a text, a Document or Point, a mapping in the JSONL
#: shape (``{"text": ..., "metadata": ...}`` or ``{"vector": [...], "payload": ...}``, each
#: with an optional ``"id"``), or the generated messages.
Item: TypeAlias = str | Document | Point | Mapping[str, Any] | pb.Document | pb.Point


@dataclass(frozen=True)
class IngestProgress:
    """How far an ``ingest`` is, in points the server has acknowledged.

    Attributes:
        done: Points written so far.
        total: Points to write; 0 while unknown (a file not yet read to its end).
        failed: Points skipped so far (a job's malformed lines, wrong vector lengths).
        points_per_second: Recent rate (jobs only; 0 otherwise).
        eta_seconds: Expected seconds left (jobs only; 0 when unknown).
        job_id: The job writing them; None for Upserts.
    """

    done: int
    total: int
    failed: int = 0
    points_per_second: float = 0.0
    eta_seconds: float = 0.0
    job_id: str | None = None


ProgressCallback: TypeAlias = Callable[[IngestProgress], None]


@dataclass(frozen=True)
class IngestResult:
    """What an ``ingest`` wrote.

    Attributes:
        collection: The collection written into.
        points_written: Points written (new or replaced), all searchable now.
        points_failed: Items a job skipped (0 for Upserts, which refuse a bad batch whole).
        failures: The first skipped items, each with its position and reason.
        job_ids: The jobs that wrote them (empty for Upserts).
    """

    collection: str
    points_written: int
    points_failed: int = 0
    failures: tuple[pb.ItemFailure, ...] = ()
    job_ids: tuple[str, ...] = ()


class JobFailed(Exception):
    """An ingest job ended FAILED (see ``job.error``) or CANCELLED; points it wrote stay.

    Attributes:
        job: The job as it ended.
    """

    def __init__(self, job: pb.Job) -> None:
        state = pb.JobState.Name(job.progress.state).removeprefix("JOB_STATE_").lower()
        super().__init__(f"job {job.job_id} into {job.collection!r} {state}: {job.error or 'no error recorded'}")
        self.job = job


@dataclass(frozen=True)
class SearchHit:
    """A point found by ``search``, best first.

    Attributes:
        collection: The collection searched.
        id: The point's id (UUID text or integer).
        score: Its score (cosine and dot: higher is closer; euclid: lower is closer).
        payload: Its payload as JSON (numbers come back as floats).
        vector: Its vector, with ``with_vectors=True``; None otherwise.
    """

    collection: str
    id: str | int
    score: float
    payload: dict[str, Any]
    vector: tuple[float, ...] | None = None

    @property
    def text(self) -> str | None:
        """The passage (``payload["text"]``) of a point ingested as a document or from a text file."""
        value = self.payload.get("text")
        return value if isinstance(value, str) else None

    @property
    def source(self) -> str | None:
        """Where the passage came from: ``payload["source"]`` (a text file's name, or yours), else ``"title"``."""
        for key in ("source", "title"):
            value = self.payload.get(key)
            if isinstance(value, str):
                return value
        return None

    @property
    def passage(self) -> int | None:
        """The passage's index in its file (``payload["passage"]``, text files), else None."""
        value = self.payload.get("passage")
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def point_id(value: PointIdLike) -> pb.PointId:
    """The contract's PointId for a UUID or an unsigned integer."""
    if isinstance(value, bool):
        raise TypeError("a point id is a UUID or an unsigned integer, not a bool")
    if isinstance(value, int):
        return pb.PointId(num=value)
    return pb.PointId(uuid=str(value))


def id_value(value: pb.PointId) -> str | int:
    return value.num if value.WhichOneof("kind") == "num" else value.uuid


def _struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    json_format.ParseDict(dict(value), out)
    return out


def _document(item: Document) -> pb.Document:
    out = pb.Document(text=item.text, metadata=_struct(item.metadata))
    if item.id is not None:
        out.id.CopyFrom(point_id(item.id))
    return out


def _point(item: Point) -> pb.Point:
    return pb.Point(
        id=point_id(item.id if item.id is not None else uuid.uuid4()),
        vector=list(item.vector),
        payload=_struct(item.payload),
    )


def to_messages(items: Iterable[Item]) -> tuple[list[pb.Document], list[pb.Point]]:
    """The items as Document or Point messages; exactly one of the two lists is non-empty.

    Raises:
        ValueError: No items, or documents and points mixed.
        TypeError: An item of another kind.
    """
    documents: list[pb.Document] = []
    points: list[pb.Point] = []
    for index, item in enumerate(items):
        if isinstance(item, pb.Document):
            documents.append(item)
        elif isinstance(item, pb.Point):
            points.append(item)
        elif isinstance(item, str):
            documents.append(_document(Document(item)))
        elif isinstance(item, Document):
            documents.append(_document(item))
        elif isinstance(item, Point):
            points.append(_point(item))
        elif isinstance(item, Mapping) and "text" in item:
            documents.append(_document(Document(item["text"], item.get("metadata") or {}, item.get("id"))))
        elif isinstance(item, Mapping) and "vector" in item:
            points.append(_point(Point(item["vector"], item.get("payload") or {}, item.get("id"))))
        else:
            raise TypeError(f"items[{index}]: a text, Document, Point or mapping with 'text' or 'vector'")
    if documents and points:
        raise ValueError("items: documents and points mixed; ingest them in two calls")
    if not documents and not points:
        raise ValueError("items: nothing to ingest")
    return documents, points


def payload_matches(filter: Mapping[str, MatchValue]) -> list[pb.PayloadMatch]:
    """Search's PayloadMatch list for ``{key: value}`` (every one must hold)."""
    out = []
    for key, value in filter.items():
        if isinstance(value, bool):
            out.append(pb.PayloadMatch(key=key, bool_value=value))
        elif isinstance(value, int):
            out.append(pb.PayloadMatch(key=key, integer_value=value))
        elif isinstance(value, str):
            out.append(pb.PayloadMatch(key=key, string_value=value))
        else:
            raise TypeError(f"filter[{key!r}]: search matches a string, an integer or a bool")
    return out


__all__ = [
    "Document",
    "IngestProgress",
    "IngestResult",
    "JobFailed",
    "Point",
    "SearchHit",
    "id_value",
    "payload_matches",
    "point_id",
    "to_messages",
]
