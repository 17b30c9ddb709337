"""Settings of the ingest service and its workers (env prefix CHATMESH_INGEST_).

The service (``python -m services.ingest``) and its workers (``python -m services.ingest.worker``)
read the same settings, as the supervisor gives every worker its service's environment.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from services.runtime.bus import NatsSettings
from services.runtime.objectstore import S3Settings
from services.runtime.settings import MiB, ServiceSettings

KiB = 1024


class IngestSettings(ServiceSettings):
    """Ingest service and worker settings."""

    model_config = SettingsConfigDict(env_prefix="CHATMESH_INGEST_")

    port: int = Field(50055, ge=0, le=65535, description="gRPC port; 0 picks a free one (tests).")
    nats: NatsSettings = Field(default_factory=NatsSettings, description="NATS (CHATMESH_INGEST_NATS__URL).")
    max_receive_message_bytes: int = Field(
        8 * MiB,
        ge=64 * KiB,
        le=64 * MiB,
        description="Largest request message (an Upsert batch: 256 points of 1,536 floats is about 1.6 MB); "
        "keep the gateway's limit for chatmesh.ingest.v1 the same (CHATMESH_MESH_INGEST_MAX_REQUEST_BYTES).",
    )
    bus_namespace: str = Field(
        "",
        pattern=r"^[a-z0-9]{0,16}$",
        description="Suffix of the INGEST stream's name, subjects and KV buckets, so two meshes (or tests) "
        "can share one NATS; empty in production.",
    )

    # -- the vector store -------------------------------------------------------------------
    qdrant_url: str = Field(
        "",
        max_length=2048,
        description="REST URL(s) of a Qdrant server or of a cluster's nodes, comma-separated "
        "(http://qdrant-0:6333,http://qdrant-1:6333); calls go over gRPC. Empty: the embedded store "
        "(Qdrant Edge in-process under data_dir).",
    )
    qdrant_grpc_port: int = Field(
        0, ge=0, le=65535, description="gRPC port of the Qdrant nodes; 0: each node's REST port + 1 (Qdrant's layout)."
    )
    qdrant_shard_number: int = Field(1, ge=1, le=64, description="Shards of each new collection on the server.")
    qdrant_replication_factor: int = Field(
        1,
        ge=1,
        le=8,
        description="Copies of each shard on the server; 2 or more keeps a collection up with a node down.",
    )
    qdrant_write_consistency_factor: int = Field(
        1, ge=1, le=8, description="Replicas that must apply a write before Qdrant acknowledges it."
    )
    qdrant_indexing_threshold_kb: int = Field(
        10_000, ge=0, le=10_000_000, description="Qdrant's indexing_threshold outside bulk jobs (KB of vectors)."
    )
    qdrant_timeout_s: int = Field(30, ge=1, le=600, description="Deadline of one request to Qdrant.")
    data_dir: Path = Field(
        Path(".chatmesh/ingest"), description="The embedded store's shard directories (one per collection)."
    )
    edge_threads: int = Field(2, ge=1, le=64, description="Threads running calls into the embedded store.")
    edge_flush_interval_s: float = Field(
        1.0, gt=0, le=60, description="How often the embedded store flushes written shards to disk."
    )
    backlog_interval_s: float = Field(
        5.0, gt=0, le=300, description="How often the work queue's backlog is read for /metrics."
    )
    health_interval_s: float = Field(
        2.0, gt=0, le=60, description="How often the store is checked; NOT_SERVING while it does not answer."
    )

    # -- peers and identity -----------------------------------------------------------------
    inference_target: str = Field(
        "127.0.0.1:50054", min_length=1, description="host:port of the inference service (Embed, ListModels)."
    )
    inference_timeout_s: float = Field(60.0, gt=0, le=600, description="Deadline of one Embed call.")
    ingest_target: str = Field(
        "127.0.0.1:50055",
        min_length=1,
        description="host:port of the ingest service, where workers send batches with the embedded store.",
    )
    service_token_private_key_file: Path | None = Field(
        None,
        description="PEM Ed25519 key that signs this process's service tokens (acting for a job's owner); "
        "unset: calls to inference forward the caller's own token, and workers cannot run.",
    )
    service_token_ttl_s: int = Field(300, ge=30, le=3600, description="Lifetime of a service token.")
    worker_name: str = Field(
        "", max_length=64, pattern=r"^[A-Za-z0-9_.-]*$", description="This worker's name (metrics, logs, tokens)."
    )

    # -- limits and quotas ------------------------------------------------------------------
    max_payload_bytes: int = Field(
        64 * KiB, ge=1 * KiB, le=1 * MiB, description="Largest payload of one point, serialised."
    )
    max_collections_per_user: int = Field(100, ge=1, le=100_000, description="Collections one user may own.")
    max_active_jobs_per_user: int = Field(
        4, ge=1, le=1000, description="Queued and running jobs one user may have; more is RESOURCE_EXHAUSTED."
    )
    max_inflight_upserts_per_user: int = Field(
        16,
        ge=1,
        le=10_000,
        description="Upsert batches of one user applied at once on one replica; more is RESOURCE_EXHAUSTED, so "
        "one user's load cannot crowd out everyone else's.",
    )
    retry_after_s: float = Field(1.0, gt=0, le=600, description="Retry hint sent with RESOURCE_EXHAUSTED.")

    # -- jobs -------------------------------------------------------------------------------
    job_chunk_batches: int = Field(
        8,
        ge=1,
        le=256,
        description="Batches in one work item of a job: what one worker takes at a time, and what a crash "
        "makes another worker redo (from its last recorded batch).",
    )
    job_max_attempts: int = Field(
        5, ge=1, le=100, description="Attempts at a batch that fails for a transient reason before its points fail."
    )
    job_retry_backoff_s: float = Field(
        0.5, gt=0, le=60, description="First retry delay of a failed batch; it doubles each attempt."
    )
    job_retry_backoff_max_s: float = Field(30.0, gt=0, le=600, description="Longest retry delay.")
    job_ack_wait_s: float = Field(
        30.0,
        ge=1,
        le=3600,
        description="Seconds a work item may go without a sign of life from its worker before JetStream hands "
        "it to another (workers signal every few seconds while they work).",
    )
    job_retention_s: int = Field(
        7 * 86_400, ge=60, le=365 * 86_400, description="How long a job's record (and progress) is kept."
    )
    max_failures_recorded: int = Field(100, ge=1, le=10_000, description="Item failures listed per job.")
    bulk_min_points: int = Field(
        10_000,
        ge=1,
        le=1 << 40,
        description="Jobs of at least this many points defer the server store's indexing until they end "
        "(Qdrant's bulk-upload guidance); smaller ones are indexed as they go.",
    )
    worker_concurrency: int = Field(
        4, ge=1, le=64, description="Work items one worker process runs at once (across jobs, fairly by owner)."
    )
    worker_poll_s: float = Field(0.5, gt=0, le=30, description="How often an idle worker looks for work.")
    worker_seen_ttl_s: float = Field(
        15.0,
        ge=3,
        le=600,
        description="A worker counts as seen (GetQueueStats `workers_seen`) this long after it last reported in; "
        "workers report in every third of it.",
    )
    import_root: Path = Field(
        Path(".chatmesh/ingest/import"),
        description="Directory that `source.path` is relative to; nothing outside it can be read.",
    )
    s3: S3Settings = Field(default_factory=S3Settings, description="S3 endpoints for job sources and snapshots.")
    max_upload_bytes: int = Field(
        4 * 1024**3, ge=1 * MiB, le=1 << 40, description="Largest file UploadSource takes (the CLI's uploads)."
    )
    upload_retention_s: int = Field(
        86_400, ge=60, le=30 * 86_400, description="An upload no job has read is removed after this long."
    )

    # -- documents --------------------------------------------------------------------------
    passage_max_chars: int = Field(
        600,
        ge=100,
        le=8192,
        description="Longest passage a document or text file is split into. The default fits inference's "
        "default embedding model (all-MiniLM-L6-v2, 512 tokens at most): 600 characters of Python's language "
        "reference, grammar rules included, are at most 413 of its tokens, where 1,000 were up to 663.",
    )
    passage_overlap_chars: int = Field(
        60, ge=0, le=2000, description="Characters a passage repeats from the end of the one before."
    )
    embed_batch_texts: int = Field(16, ge=1, le=256, description="Texts per inference.Embed call.")

    # -- snapshots --------------------------------------------------------------------------
    snapshot_root: Path = Field(
        Path(".chatmesh/ingest/snapshots"),
        description="Directory that local snapshot targets are relative to; nothing outside it is written.",
    )
    snapshot_min_interval_s: int = Field(
        300, ge=1, le=86_400, description="Shortest snapshot schedule interval a user may set."
    )
    snapshot_scheduler_tick_s: float = Field(
        5.0, gt=0, le=3600, description="How often due scheduled snapshots are looked for."
    )

    @field_validator("passage_overlap_chars")
    @classmethod
    def _overlap_shorter_than_passage(cls, value: int, info: object) -> int:
        data = getattr(info, "data", {})
        limit = data.get("passage_max_chars")
        if limit is not None and value >= limit // 2:
            raise ValueError(f"must be under half of passage_max_chars ({limit})")
        return value

    @property
    def qdrant_urls(self) -> list[str]:
        """The Qdrant nodes, in order; empty for the embedded store."""
        return [u.strip() for u in self.qdrant_url.split(",") if u.strip()]

    @property
    def embedded(self) -> bool:
        """Whether the store is Qdrant Edge in this process."""
        return not self.qdrant_urls
