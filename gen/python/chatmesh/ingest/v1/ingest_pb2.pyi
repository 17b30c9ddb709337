import datetime

from buf.validate import validate_pb2 as _validate_pb2
from chatmesh.common.v1 import access_pb2 as _access_pb2
from chatmesh.common.v1 import common_pb2 as _common_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Distance(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DISTANCE_UNSPECIFIED: _ClassVar[Distance]
    DISTANCE_COSINE: _ClassVar[Distance]
    DISTANCE_DOT: _ClassVar[Distance]
    DISTANCE_EUCLID: _ClassVar[Distance]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
    JOB_STATE_COMPLETED_WITH_ERRORS: _ClassVar[JobState]

class PayloadIndexType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYLOAD_INDEX_TYPE_UNSPECIFIED: _ClassVar[PayloadIndexType]
    PAYLOAD_INDEX_TYPE_KEYWORD: _ClassVar[PayloadIndexType]
    PAYLOAD_INDEX_TYPE_INTEGER: _ClassVar[PayloadIndexType]
    PAYLOAD_INDEX_TYPE_FLOAT: _ClassVar[PayloadIndexType]
    PAYLOAD_INDEX_TYPE_BOOL: _ClassVar[PayloadIndexType]
    PAYLOAD_INDEX_TYPE_TEXT: _ClassVar[PayloadIndexType]
    PAYLOAD_INDEX_TYPE_UUID: _ClassVar[PayloadIndexType]
    PAYLOAD_INDEX_TYPE_DATETIME: _ClassVar[PayloadIndexType]

class SourceFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SOURCE_FORMAT_UNSPECIFIED: _ClassVar[SourceFormat]
    SOURCE_FORMAT_JSONL: _ClassVar[SourceFormat]
    SOURCE_FORMAT_CSV: _ClassVar[SourceFormat]
    SOURCE_FORMAT_PARQUET: _ClassVar[SourceFormat]
    SOURCE_FORMAT_TEXT: _ClassVar[SourceFormat]
DISTANCE_UNSPECIFIED: Distance
DISTANCE_COSINE: Distance
DISTANCE_DOT: Distance
DISTANCE_EUCLID: Distance
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
JOB_STATE_COMPLETED_WITH_ERRORS: JobState
PAYLOAD_INDEX_TYPE_UNSPECIFIED: PayloadIndexType
PAYLOAD_INDEX_TYPE_KEYWORD: PayloadIndexType
PAYLOAD_INDEX_TYPE_INTEGER: PayloadIndexType
PAYLOAD_INDEX_TYPE_FLOAT: PayloadIndexType
PAYLOAD_INDEX_TYPE_BOOL: PayloadIndexType
PAYLOAD_INDEX_TYPE_TEXT: PayloadIndexType
PAYLOAD_INDEX_TYPE_UUID: PayloadIndexType
PAYLOAD_INDEX_TYPE_DATETIME: PayloadIndexType
SOURCE_FORMAT_UNSPECIFIED: SourceFormat
SOURCE_FORMAT_JSONL: SourceFormat
SOURCE_FORMAT_CSV: SourceFormat
SOURCE_FORMAT_PARQUET: SourceFormat
SOURCE_FORMAT_TEXT: SourceFormat

class PayloadIndex(_message.Message):
    __slots__ = ("key", "type")
    KEY_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    key: str
    type: PayloadIndexType
    def __init__(self, key: _Optional[str] = ..., type: _Optional[_Union[PayloadIndexType, str]] = ...) -> None: ...

class SnapshotSchedule(_message.Message):
    __slots__ = ("interval_seconds", "target", "keep")
    INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    KEEP_FIELD_NUMBER: _ClassVar[int]
    interval_seconds: int
    target: SnapshotTarget
    keep: int
    def __init__(self, interval_seconds: _Optional[int] = ..., target: _Optional[_Union[SnapshotTarget, _Mapping]] = ..., keep: _Optional[int] = ...) -> None: ...

class Collection(_message.Message):
    __slots__ = ("name", "vector_size", "distance", "embedding_model", "points_count", "created_at", "payload_indexes", "snapshot_schedule")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VECTOR_SIZE_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_MODEL_FIELD_NUMBER: _ClassVar[int]
    POINTS_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_INDEXES_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    name: str
    vector_size: int
    distance: Distance
    embedding_model: str
    points_count: int
    created_at: _timestamp_pb2.Timestamp
    payload_indexes: _containers.RepeatedCompositeFieldContainer[PayloadIndex]
    snapshot_schedule: SnapshotSchedule
    def __init__(self, name: _Optional[str] = ..., vector_size: _Optional[int] = ..., distance: _Optional[_Union[Distance, str]] = ..., embedding_model: _Optional[str] = ..., points_count: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., payload_indexes: _Optional[_Iterable[_Union[PayloadIndex, _Mapping]]] = ..., snapshot_schedule: _Optional[_Union[SnapshotSchedule, _Mapping]] = ...) -> None: ...

class PointId(_message.Message):
    __slots__ = ("uuid", "num")
    UUID_FIELD_NUMBER: _ClassVar[int]
    NUM_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    num: int
    def __init__(self, uuid: _Optional[str] = ..., num: _Optional[int] = ...) -> None: ...

class Point(_message.Message):
    __slots__ = ("id", "vector", "payload")
    ID_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    id: PointId
    vector: _containers.RepeatedScalarFieldContainer[float]
    payload: _struct_pb2.Struct
    def __init__(self, id: _Optional[_Union[PointId, _Mapping]] = ..., vector: _Optional[_Iterable[float]] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Document(_message.Message):
    __slots__ = ("id", "text", "metadata")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: PointId
    text: str
    metadata: _struct_pb2.Struct
    def __init__(self, id: _Optional[_Union[PointId, _Mapping]] = ..., text: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class CreateCollectionRequest(_message.Message):
    __slots__ = ("name", "vector_size", "distance", "embedding_model", "payload_indexes", "snapshot_schedule")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VECTOR_SIZE_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_MODEL_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_INDEXES_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    name: str
    vector_size: int
    distance: Distance
    embedding_model: str
    payload_indexes: _containers.RepeatedCompositeFieldContainer[PayloadIndex]
    snapshot_schedule: SnapshotSchedule
    def __init__(self, name: _Optional[str] = ..., vector_size: _Optional[int] = ..., distance: _Optional[_Union[Distance, str]] = ..., embedding_model: _Optional[str] = ..., payload_indexes: _Optional[_Iterable[_Union[PayloadIndex, _Mapping]]] = ..., snapshot_schedule: _Optional[_Union[SnapshotSchedule, _Mapping]] = ...) -> None: ...

class CreateCollectionResponse(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: Collection
    def __init__(self, collection: _Optional[_Union[Collection, _Mapping]] = ...) -> None: ...

class ListCollectionsRequest(_message.Message):
    __slots__ = ("page",)
    PAGE_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListCollectionsResponse(_message.Message):
    __slots__ = ("collections", "page")
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedCompositeFieldContainer[Collection]
    page: _common_pb2.PageResponse
    def __init__(self, collections: _Optional[_Iterable[_Union[Collection, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class DeleteCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteCollectionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UpsertRequest(_message.Message):
    __slots__ = ("collection", "points", "documents")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    points: _containers.RepeatedCompositeFieldContainer[Point]
    documents: _containers.RepeatedCompositeFieldContainer[Document]
    def __init__(self, collection: _Optional[str] = ..., points: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., documents: _Optional[_Iterable[_Union[Document, _Mapping]]] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("points_upserted", "documents_embedded")
    POINTS_UPSERTED_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_EMBEDDED_FIELD_NUMBER: _ClassVar[int]
    points_upserted: int
    documents_embedded: int
    def __init__(self, points_upserted: _Optional[int] = ..., documents_embedded: _Optional[int] = ...) -> None: ...

class StreamUpsertRequest(_message.Message):
    __slots__ = ("collection", "points", "documents")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    points: _containers.RepeatedCompositeFieldContainer[Point]
    documents: _containers.RepeatedCompositeFieldContainer[Document]
    def __init__(self, collection: _Optional[str] = ..., points: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., documents: _Optional[_Iterable[_Union[Document, _Mapping]]] = ...) -> None: ...

class StreamUpsertResponse(_message.Message):
    __slots__ = ("batches", "points_upserted", "documents_embedded")
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    POINTS_UPSERTED_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_EMBEDDED_FIELD_NUMBER: _ClassVar[int]
    batches: int
    points_upserted: int
    documents_embedded: int
    def __init__(self, batches: _Optional[int] = ..., points_upserted: _Optional[int] = ..., documents_embedded: _Optional[int] = ...) -> None: ...

class InlineDocuments(_message.Message):
    __slots__ = ("documents",)
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[Document]
    def __init__(self, documents: _Optional[_Iterable[_Union[Document, _Mapping]]] = ...) -> None: ...

class S3Object(_message.Message):
    __slots__ = ("endpoint", "bucket", "key")
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    endpoint: str
    bucket: str
    key: str
    def __init__(self, endpoint: _Optional[str] = ..., bucket: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...

class JobSource(_message.Message):
    __slots__ = ("documents", "path", "s3", "upload_id", "format")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    S3_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    documents: InlineDocuments
    path: str
    s3: S3Object
    upload_id: str
    format: SourceFormat
    def __init__(self, documents: _Optional[_Union[InlineDocuments, _Mapping]] = ..., path: _Optional[str] = ..., s3: _Optional[_Union[S3Object, _Mapping]] = ..., upload_id: _Optional[str] = ..., format: _Optional[_Union[SourceFormat, str]] = ...) -> None: ...

class JobProgress(_message.Message):
    __slots__ = ("job_id", "state", "points_done", "points_total", "points_failed", "batches_done", "batches_total", "last_error", "points_per_second", "updated_at", "eta_seconds")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    POINTS_DONE_FIELD_NUMBER: _ClassVar[int]
    POINTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    POINTS_FAILED_FIELD_NUMBER: _ClassVar[int]
    BATCHES_DONE_FIELD_NUMBER: _ClassVar[int]
    BATCHES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    POINTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: JobState
    points_done: int
    points_total: int
    points_failed: int
    batches_done: int
    batches_total: int
    last_error: str
    points_per_second: float
    updated_at: _timestamp_pb2.Timestamp
    eta_seconds: float
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., points_done: _Optional[int] = ..., points_total: _Optional[int] = ..., points_failed: _Optional[int] = ..., batches_done: _Optional[int] = ..., batches_total: _Optional[int] = ..., last_error: _Optional[str] = ..., points_per_second: _Optional[float] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., eta_seconds: _Optional[float] = ...) -> None: ...

class ItemFailure(_message.Message):
    __slots__ = ("position", "reason")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    position: int
    reason: str
    def __init__(self, position: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "collection", "batch_size", "parallelism", "progress", "error", "created_at", "started_at", "finished_at", "failures")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    PARALLELISM_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    collection: str
    batch_size: int
    parallelism: int
    progress: JobProgress
    error: str
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    failures: _containers.RepeatedCompositeFieldContainer[ItemFailure]
    def __init__(self, job_id: _Optional[str] = ..., collection: _Optional[str] = ..., batch_size: _Optional[int] = ..., parallelism: _Optional[int] = ..., progress: _Optional[_Union[JobProgress, _Mapping]] = ..., error: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., failures: _Optional[_Iterable[_Union[ItemFailure, _Mapping]]] = ...) -> None: ...

class StartJobRequest(_message.Message):
    __slots__ = ("collection", "source", "batch_size", "parallelism")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    PARALLELISM_FIELD_NUMBER: _ClassVar[int]
    collection: str
    source: JobSource
    batch_size: int
    parallelism: int
    def __init__(self, collection: _Optional[str] = ..., source: _Optional[_Union[JobSource, _Mapping]] = ..., batch_size: _Optional[int] = ..., parallelism: _Optional[int] = ...) -> None: ...

class StartJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchJobResponse(_message.Message):
    __slots__ = ("progress",)
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    progress: JobProgress
    def __init__(self, progress: _Optional[_Union[JobProgress, _Mapping]] = ...) -> None: ...

class GetQueueStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetQueueStatsResponse(_message.Message):
    __slots__ = ("pending_items", "in_flight_items", "redelivered_items", "jobs_in_flight", "my_jobs_in_flight", "workers_seen", "points_per_second", "my_points_per_second", "sampled_at")
    PENDING_ITEMS_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_ITEMS_FIELD_NUMBER: _ClassVar[int]
    REDELIVERED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    JOBS_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    MY_JOBS_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    WORKERS_SEEN_FIELD_NUMBER: _ClassVar[int]
    POINTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    MY_POINTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_AT_FIELD_NUMBER: _ClassVar[int]
    pending_items: int
    in_flight_items: int
    redelivered_items: int
    jobs_in_flight: int
    my_jobs_in_flight: int
    workers_seen: int
    points_per_second: float
    my_points_per_second: float
    sampled_at: _timestamp_pb2.Timestamp
    def __init__(self, pending_items: _Optional[int] = ..., in_flight_items: _Optional[int] = ..., redelivered_items: _Optional[int] = ..., jobs_in_flight: _Optional[int] = ..., my_jobs_in_flight: _Optional[int] = ..., workers_seen: _Optional[int] = ..., points_per_second: _Optional[float] = ..., my_points_per_second: _Optional[float] = ..., sampled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("collection", "page")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    collection: str
    page: _common_pb2.PageRequest
    def __init__(self, collection: _Optional[str] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "page")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    page: _common_pb2.PageResponse
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class PayloadMatch(_message.Message):
    __slots__ = ("key", "string_value", "integer_value", "bool_value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    INTEGER_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    string_value: str
    integer_value: int
    bool_value: bool
    def __init__(self, key: _Optional[str] = ..., string_value: _Optional[str] = ..., integer_value: _Optional[int] = ..., bool_value: _Optional[bool] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("collection", "vector", "text", "limit", "score_threshold", "filter", "with_vectors")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    WITH_VECTORS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    vector: _containers.RepeatedScalarFieldContainer[float]
    text: str
    limit: int
    score_threshold: float
    filter: _containers.RepeatedCompositeFieldContainer[PayloadMatch]
    with_vectors: bool
    def __init__(self, collection: _Optional[str] = ..., vector: _Optional[_Iterable[float]] = ..., text: _Optional[str] = ..., limit: _Optional[int] = ..., score_threshold: _Optional[float] = ..., filter: _Optional[_Iterable[_Union[PayloadMatch, _Mapping]]] = ..., with_vectors: _Optional[bool] = ...) -> None: ...

class ScoredPoint(_message.Message):
    __slots__ = ("id", "score", "payload", "vector")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    id: PointId
    score: float
    payload: _struct_pb2.Struct
    vector: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, id: _Optional[_Union[PointId, _Mapping]] = ..., score: _Optional[float] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., vector: _Optional[_Iterable[float]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("points",)
    POINTS_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[ScoredPoint]
    def __init__(self, points: _Optional[_Iterable[_Union[ScoredPoint, _Mapping]]] = ...) -> None: ...

class LocalDirectory(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...

class S3Bucket(_message.Message):
    __slots__ = ("endpoint", "bucket", "prefix")
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    endpoint: str
    bucket: str
    prefix: str
    def __init__(self, endpoint: _Optional[str] = ..., bucket: _Optional[str] = ..., prefix: _Optional[str] = ...) -> None: ...

class SnapshotTarget(_message.Message):
    __slots__ = ("local", "s3")
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    S3_FIELD_NUMBER: _ClassVar[int]
    local: LocalDirectory
    s3: S3Bucket
    def __init__(self, local: _Optional[_Union[LocalDirectory, _Mapping]] = ..., s3: _Optional[_Union[S3Bucket, _Mapping]] = ...) -> None: ...

class Snapshot(_message.Message):
    __slots__ = ("snapshot_id", "collection", "target", "file_name", "size_bytes", "points_count", "vector_size", "distance", "embedding_model", "created_at", "sha256", "scheduled")
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    POINTS_COUNT_FIELD_NUMBER: _ClassVar[int]
    VECTOR_SIZE_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_MODEL_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_FIELD_NUMBER: _ClassVar[int]
    snapshot_id: str
    collection: str
    target: SnapshotTarget
    file_name: str
    size_bytes: int
    points_count: int
    vector_size: int
    distance: Distance
    embedding_model: str
    created_at: _timestamp_pb2.Timestamp
    sha256: str
    scheduled: bool
    def __init__(self, snapshot_id: _Optional[str] = ..., collection: _Optional[str] = ..., target: _Optional[_Union[SnapshotTarget, _Mapping]] = ..., file_name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., points_count: _Optional[int] = ..., vector_size: _Optional[int] = ..., distance: _Optional[_Union[Distance, str]] = ..., embedding_model: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sha256: _Optional[str] = ..., scheduled: _Optional[bool] = ...) -> None: ...

class CreateSnapshotRequest(_message.Message):
    __slots__ = ("collection", "target")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    collection: str
    target: SnapshotTarget
    def __init__(self, collection: _Optional[str] = ..., target: _Optional[_Union[SnapshotTarget, _Mapping]] = ...) -> None: ...

class CreateSnapshotResponse(_message.Message):
    __slots__ = ("snapshot",)
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    snapshot: Snapshot
    def __init__(self, snapshot: _Optional[_Union[Snapshot, _Mapping]] = ...) -> None: ...

class ListSnapshotsRequest(_message.Message):
    __slots__ = ("collection", "page")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    collection: str
    page: _common_pb2.PageRequest
    def __init__(self, collection: _Optional[str] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListSnapshotsResponse(_message.Message):
    __slots__ = ("snapshots", "page")
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    snapshots: _containers.RepeatedCompositeFieldContainer[Snapshot]
    page: _common_pb2.PageResponse
    def __init__(self, snapshots: _Optional[_Iterable[_Union[Snapshot, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class RestoreSnapshotRequest(_message.Message):
    __slots__ = ("snapshot_id", "collection", "replace_existing")
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    REPLACE_EXISTING_FIELD_NUMBER: _ClassVar[int]
    snapshot_id: str
    collection: str
    replace_existing: bool
    def __init__(self, snapshot_id: _Optional[str] = ..., collection: _Optional[str] = ..., replace_existing: _Optional[bool] = ...) -> None: ...

class RestoreSnapshotResponse(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: Collection
    def __init__(self, collection: _Optional[_Union[Collection, _Mapping]] = ...) -> None: ...

class DeleteSnapshotRequest(_message.Message):
    __slots__ = ("snapshot_id",)
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    snapshot_id: str
    def __init__(self, snapshot_id: _Optional[str] = ...) -> None: ...

class DeleteSnapshotResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetSnapshotScheduleRequest(_message.Message):
    __slots__ = ("collection", "schedule")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    collection: str
    schedule: SnapshotSchedule
    def __init__(self, collection: _Optional[str] = ..., schedule: _Optional[_Union[SnapshotSchedule, _Mapping]] = ...) -> None: ...

class SetSnapshotScheduleResponse(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: Collection
    def __init__(self, collection: _Optional[_Union[Collection, _Mapping]] = ...) -> None: ...

class UploadSourceRequest(_message.Message):
    __slots__ = ("file_name", "chunk")
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    file_name: str
    chunk: bytes
    def __init__(self, file_name: _Optional[str] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class UploadSourceResponse(_message.Message):
    __slots__ = ("upload_id", "size_bytes", "sha256")
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    size_bytes: int
    sha256: str
    def __init__(self, upload_id: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...
