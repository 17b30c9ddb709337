"""JetStream names the ingest service and its workers share, and the configs declared at start.

One work-queue stream, INGEST, holds two kinds of work:

* ``ingest.jobs.plan.<job>``: one message a job from a file: a worker reads the source's
  size and cuts it into work items (taken by the shared ``planner`` consumer);
* ``ingest.jobs.item.<job>.<n>``: one message a work item (a range of the source, or some
  inline documents), taken through the job's own consumer ``job-<job>``, whose
  ``max_ack_pending`` is the job's parallelism.

Consumers of a work-queue stream may not overlap, and these don't. A work item is removed
when a worker acks it; a worker that dies leaves it unacked and JetStream hands it to
another after ``ack_wait``. Item messages carry ``Nats-Msg-Id`` ``<job>.<n>``, so a planner
redelivered halfway through publishing cannot queue an item twice.

Three KV buckets hold the records: collections (key ``<owner>.<name>``), jobs (key
``<owner>.<job>``, the progress that WatchJob streams) and snapshots (``<owner>.<snapshot>``).
A fourth, workers (key: a worker's name, forgotten ``worker_seen_ttl_s`` after its last
write), is where workers report in (GetQueueStats counts them; see
:mod:`services.ingest.queuestats`).
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js.api import KeyValueConfig, RetentionPolicy, StorageType, StreamConfig


@dataclass(frozen=True)
class IngestNames:
    """The stream, subjects and buckets of one namespace ("" in production)."""

    namespace: str = ""

    @property
    def _suffix(self) -> str:
        return f"_{self.namespace}" if self.namespace else ""

    @property
    def stream(self) -> str:
        """The work-queue stream."""
        return "INGEST" + self._suffix.upper()

    @property
    def root(self) -> str:
        """Subject root of the stream."""
        return f"ingest{self._suffix}.jobs"

    def plan_subject(self, job_id: str) -> str:
        """Where a file job's plan message goes."""
        return f"{self.root}.plan.{job_id}"

    @property
    def plan_filter(self) -> str:
        """Every plan message (the planner consumer's filter)."""
        return f"{self.root}.plan.>"

    def item_subject(self, job_id: str, index: int) -> str:
        """Where a job's work item ``index`` goes."""
        return f"{self.root}.item.{job_id}.{index}"

    def item_filter(self, job_id: str) -> str:
        """Every work item of one job (its consumer's filter)."""
        return f"{self.root}.item.{job_id}.>"

    @staticmethod
    def job_consumer(job_id: str) -> str:
        """The durable consumer of one job's work items."""
        return f"job-{job_id}"

    PLANNER = "planner"

    @property
    def collections_bucket(self) -> str:
        """KV bucket of collection records."""
        return f"ingest{self._suffix}_collections"

    @property
    def jobs_bucket(self) -> str:
        """KV bucket of job records and progress."""
        return f"ingest{self._suffix}_jobs"

    @property
    def snapshots_bucket(self) -> str:
        """KV bucket of snapshot records."""
        return f"ingest{self._suffix}_snapshots"

    @property
    def workers_bucket(self) -> str:
        """KV bucket where workers report in (one key a worker, expiring)."""
        return f"ingest{self._suffix}_workers"

    def stream_config(self) -> StreamConfig:
        """The INGEST work-queue stream."""
        return StreamConfig(
            name=self.stream,
            subjects=[f"{self.root}.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            max_age=7 * 86_400,
            # Planning a million-point file and publishing its items takes seconds; ten
            # minutes of de-duplication covers a planner that is redelivered mid-way.
            duplicate_window=600,
            max_msg_size=1024 * 1024,
        )

    def kv_configs(self, job_retention_s: int, worker_seen_ttl_s: float = 15.0) -> tuple[KeyValueConfig, ...]:
        """The three record buckets (jobs expire ``job_retention_s`` after their last update),
        and the workers bucket (keys expire ``worker_seen_ttl_s`` after their last write)."""
        return (
            KeyValueConfig(bucket=self.collections_bucket, history=1, storage=StorageType.FILE),
            KeyValueConfig(bucket=self.jobs_bucket, history=1, storage=StorageType.FILE, ttl=job_retention_s),
            KeyValueConfig(bucket=self.snapshots_bucket, history=1, storage=StorageType.FILE),
            KeyValueConfig(bucket=self.workers_bucket, history=1, storage=StorageType.MEMORY, ttl=worker_seen_ttl_s),
        )
