"""The records the ingest service keeps in its KV buckets (JSON through pydantic).

Times are unix seconds (floats). Enumerations are lowercase strings, mapped to the
contract's enums in :mod:`services.ingest.protos`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from services.ingest.store.base import DistanceName, IndexKind

JobStateName = Literal["queued", "running", "succeeded", "completed_with_errors", "failed", "cancelled"]
TERMINAL_STATES: frozenset[str] = frozenset({"succeeded", "completed_with_errors", "failed", "cancelled"})
SourceFormatName = Literal["", "jsonl", "csv", "parquet", "text"]


class TargetRecord(BaseModel):
    """Where snapshots go: a directory under the snapshot root, or a bucket and prefix."""

    kind: Literal["local", "s3"]
    path: str = ""
    endpoint: str = ""
    bucket: str = ""
    prefix: str = ""


class ScheduleRecord(BaseModel):
    """A collection's snapshot schedule."""

    interval_s: int
    target: TargetRecord
    keep: int


class CollectionRecord(BaseModel):
    """A user's collection and where the store keeps it."""

    owner: str
    name: str
    store_name: str
    vector_size: int
    distance: DistanceName
    embedding_model: str = ""
    payload_indexes: list[tuple[str, IndexKind]] = Field(default_factory=list)
    created_at: float
    schedule: ScheduleRecord | None = None
    last_scheduled_at: float = 0.0

    @property
    def key(self) -> str:
        """Its KV key."""
        return collection_key(self.owner, self.name)


def collection_key(owner: str, name: str) -> str:
    """KV key of ``owner``'s collection ``name``."""
    return f"{owner}.{name}"


class SourceRecord(BaseModel):
    """Where a job reads from (inline documents travel in the work items, not here)."""

    kind: Literal["documents", "path", "s3"]
    path: str = ""
    endpoint: str = ""
    bucket: str = ""
    key: str = ""
    format: SourceFormatName = ""
    documents: int = 0
    upload_id: str = ""
    """Set when ``path`` is an upload (removed when the job ends)."""

    @property
    def uri(self) -> str:
        """A stable name of the source, which derived point ids are made from."""
        if self.kind == "path":
            return f"file:{self.path}"
        if self.kind == "s3":
            return f"s3:{self.endpoint}/{self.bucket}/{self.key}"
        return "inline"


class ItemProgress(BaseModel):
    """What a work item in flight has written so far (for resuming it after a crash)."""

    batches_done: int = 0
    points_done: int = 0
    points_failed: int = 0


class FailureRecord(BaseModel):
    """An item that could not be ingested."""

    position: int
    reason: str


class JobRecord(BaseModel):
    """An ingest job and its progress (the value WatchJob streams)."""

    job_id: str
    owner: str
    collection: str
    store_name: str
    vector_size: int
    embedding_model: str = ""
    batch_size: int
    parallelism: int
    source: SourceRecord
    state: JobStateName = "queued"
    error: str = ""
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float
    planned: bool = False
    items_total: int = 0
    points_total: int = 0
    batches_total: int = 0
    done_items: list[int] = Field(default_factory=list)
    partial: dict[str, ItemProgress] = Field(default_factory=dict)
    points_done: int = 0
    points_failed: int = 0
    batches_done: int = 0
    failures: list[FailureRecord] = Field(default_factory=list)
    last_error: str = ""
    rate_samples: list[tuple[float, int]] = Field(default_factory=list)
    bulk: bool = False

    @property
    def key(self) -> str:
        """Its KV key."""
        return job_key(self.owner, self.job_id)

    @property
    def terminal(self) -> bool:
        """Whether the job has ended."""
        return self.state in TERMINAL_STATES


def job_key(owner: str, job_id: str) -> str:
    """KV key of ``owner``'s job ``job_id``."""
    return f"{owner}.{job_id}"


class SnapshotRecord(BaseModel):
    """A snapshot file and what it holds."""

    snapshot_id: str
    owner: str
    collection: str
    target: TargetRecord
    file_name: str
    size_bytes: int
    points_count: int
    vector_size: int
    distance: DistanceName
    embedding_model: str = ""
    payload_indexes: list[tuple[str, IndexKind]] = Field(default_factory=list)
    created_at: float
    sha256: str
    scheduled: bool = False

    @property
    def key(self) -> str:
        """Its KV key."""
        return snapshot_key(self.owner, self.snapshot_id)


def snapshot_key(owner: str, snapshot_id: str) -> str:
    """KV key of ``owner``'s snapshot ``snapshot_id``."""
    return f"{owner}.{snapshot_id}"
