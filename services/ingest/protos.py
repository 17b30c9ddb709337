"""Translations between the contract's messages and the ingest domain (no logic of its own)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

from chatmesh.ingest.v1 import ingest_pb2 as pb
from services.ingest.points import DocumentInput, PointInput
from services.ingest.records import CollectionRecord, ScheduleRecord, TargetRecord
from services.ingest.store.base import DistanceName, Hit, IndexKind, PayloadMatch, PointKey

DISTANCES: dict[pb.Distance, DistanceName] = {
    pb.DISTANCE_COSINE: "cosine",
    pb.DISTANCE_DOT: "dot",
    pb.DISTANCE_EUCLID: "euclid",
}
DISTANCES_PB = {v: k for k, v in DISTANCES.items()}
INDEXES: dict[pb.PayloadIndexType, IndexKind] = {
    pb.PAYLOAD_INDEX_TYPE_KEYWORD: "keyword",
    pb.PAYLOAD_INDEX_TYPE_INTEGER: "integer",
    pb.PAYLOAD_INDEX_TYPE_FLOAT: "float",
    pb.PAYLOAD_INDEX_TYPE_BOOL: "bool",
    pb.PAYLOAD_INDEX_TYPE_TEXT: "text",
    pb.PAYLOAD_INDEX_TYPE_UUID: "uuid",
    pb.PAYLOAD_INDEX_TYPE_DATETIME: "datetime",
}
INDEXES_PB = {v: k for k, v in INDEXES.items()}
_INT_LIMIT = 2**53


def timestamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    """A unix time as a Timestamp (None stays unset)."""
    if seconds is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def _value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        number = value.number_value
        # JSON has one number type; whole numbers stay integers (integer payload indexes and filters).
        return int(number) if number.is_integer() and abs(number) < _INT_LIMIT else number
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_dict(value.struct_value)
    if kind == "list_value":
        return [_value(v) for v in value.list_value.values]
    return None


def struct_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as a plain dict (whole numbers as ints)."""
    return {key: _value(value) for key, value in struct.fields.items()}


def struct_of(payload: Mapping[str, Any]) -> struct_pb2.Struct:
    """A plain dict as a Struct."""
    struct = struct_pb2.Struct()
    struct.update(dict(payload))
    return struct


def point_key(pid: pb.PointId) -> PointKey:
    """A PointId as the store's key (UUIDs canonical, lowercase)."""
    if pid.WhichOneof("kind") == "uuid":
        return str(uuid.UUID(pid.uuid))
    return int(pid.num)


def point_id_pb(key: PointKey) -> pb.PointId:
    """A store key as a PointId."""
    return pb.PointId(num=key) if isinstance(key, int) else pb.PointId(uuid=key)


_NO_PAYLOAD: dict[str, Any] = {}


def point_input(point: pb.Point) -> PointInput:
    """A Point of a request."""
    if not point.HasField("payload"):  # the common bulk case: skip the Struct walk
        return PointInput(point_key(point.id), point.vector, _NO_PAYLOAD, 0)
    return PointInput(point_key(point.id), point.vector, struct_dict(point.payload), point.payload.ByteSize())


def document_input(doc: pb.Document) -> DocumentInput:
    """A Document of a request."""
    return DocumentInput(
        point_key(doc.id) if doc.HasField("id") else None,
        doc.text,
        struct_dict(doc.metadata),
        doc.metadata.ByteSize(),
    )


def match_of(match: pb.PayloadMatch) -> PayloadMatch:
    """A PayloadMatch of a Search request."""
    kind = match.WhichOneof("value")
    if kind == "string_value":
        return PayloadMatch(match.key, match.string_value)
    if kind == "bool_value":
        return PayloadMatch(match.key, match.bool_value)
    return PayloadMatch(match.key, match.integer_value)


def scored_point(hit: Hit) -> pb.ScoredPoint:
    """A search hit as a ScoredPoint."""
    return pb.ScoredPoint(
        id=point_id_pb(hit.id), score=hit.score, payload=struct_of(hit.payload), vector=hit.vector or ()
    )


def target_record(target: pb.SnapshotTarget) -> TargetRecord:
    """A SnapshotTarget as a record."""
    if target.WhichOneof("kind") == "s3":
        return TargetRecord(kind="s3", endpoint=target.s3.endpoint, bucket=target.s3.bucket, prefix=target.s3.prefix)
    return TargetRecord(kind="local", path=target.local.path)


def target_pb(target: TargetRecord) -> pb.SnapshotTarget:
    """A target record as a SnapshotTarget."""
    if target.kind == "s3":
        return pb.SnapshotTarget(s3=pb.S3Bucket(endpoint=target.endpoint, bucket=target.bucket, prefix=target.prefix))
    return pb.SnapshotTarget(local=pb.LocalDirectory(path=target.path))


def schedule_record(schedule: pb.SnapshotSchedule) -> ScheduleRecord:
    """A SnapshotSchedule as a record."""
    return ScheduleRecord(
        interval_s=schedule.interval_seconds, target=target_record(schedule.target), keep=schedule.keep
    )


def collection_pb(record: CollectionRecord, points_count: int) -> pb.Collection:
    """A collection record as the contract's Collection."""
    schedule = record.schedule
    return pb.Collection(
        name=record.name,
        vector_size=record.vector_size,
        distance=DISTANCES_PB[record.distance],
        embedding_model=record.embedding_model,
        points_count=points_count,
        created_at=timestamp(record.created_at),
        payload_indexes=[pb.PayloadIndex(key=k, type=INDEXES_PB[t]) for k, t in record.payload_indexes],
        snapshot_schedule=(
            pb.SnapshotSchedule(
                interval_seconds=schedule.interval_s, target=target_pb(schedule.target), keep=schedule.keep
            )
            if schedule
            else None
        ),
    )
