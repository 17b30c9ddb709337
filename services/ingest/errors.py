"""Errors of the ingest service.

::

    ChatmeshError (services.runtime.errors)
    ├── InvalidArgument                    names the field (`points[3].vector`, `source.path`)
    ├── NotFound
    │   ├── CollectionNotFound             no such collection of the caller's
    │   ├── JobNotFound                    no such job of the caller's
    │   ├── SnapshotNotFound               no such snapshot of the caller's, or its file is gone
    │   └── SourceNotFound                 a job's source file or object does not exist
    ├── AlreadyExists
    │   └── CollectionExists               the caller already has a collection of that name
    ├── PermissionDenied
    │   └── OutsideRoot                    a path outside the import or snapshot root
    ├── FailedPrecondition
    │   ├── NoEmbeddingModel               documents or a text query into a vectors-only collection
    │   ├── CollectionBusy                 a job is still writing into the collection
    │   └── SnapshotCorrupt                the snapshot file fails its checksum or cannot be read
    ├── ResourceExhausted
    │   └── TooManyJobs                    the caller's queued and running jobs are at their limit
    └── Unavailable
        └── StoreUnavailable               the vector store (Qdrant) cannot be reached or failed

Domain modules raise these; the runtime's error layer turns them into statuses. Messages
name ids and fields, never store internals.
"""

from __future__ import annotations

from services.runtime.errors import (
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)


class CollectionNotFound(NotFound):
    """No collection of that name among the caller's."""

    def __init__(self, name: str) -> None:
        super().__init__(f"collection {name!r} not found")


class JobNotFound(NotFound):
    """No job with that id among the caller's."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} not found")


class SnapshotNotFound(NotFound):
    """No snapshot with that id among the caller's, or its file is gone from the target."""


class SourceNotFound(NotFound):
    """A job's source does not exist (the message names `source.path` or `source.s3.key`)."""


class CollectionExists(AlreadyExists):
    """The caller already has a collection of that name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"collection {name!r} already exists")


class OutsideRoot(PermissionDenied):
    """A path that leaves the server's import or snapshot root."""


class NoEmbeddingModel(FailedPrecondition):
    """Documents or a text query for a collection that takes vectors only."""

    def __init__(self, name: str) -> None:
        super().__init__(f"collection {name!r} has no embedding model: send vectors, not documents or text")


class CollectionBusy(FailedPrecondition):
    """A job is still writing into the collection."""

    def __init__(self, name: str, job_id: str) -> None:
        super().__init__(f"collection {name!r} is being written by job {job_id}: cancel it first")


class SnapshotCorrupt(FailedPrecondition):
    """The snapshot's file does not match its checksum, or is not a snapshot."""


class TooManyJobs(ResourceExhausted):
    """The caller has as many queued and running jobs as allowed."""


class StoreUnavailable(Unavailable):
    """The vector store cannot be reached, or failed a request."""

    def __init__(self, what: str = "the vector store") -> None:
        super().__init__(f"{what} is unavailable; retry")
