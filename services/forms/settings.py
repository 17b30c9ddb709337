"""Settings of the forms service and its worker processes (env prefix CHATMESH_FORMS_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from services.runtime.bus import NatsSettings
from services.runtime.cql import CqlSettings
from services.runtime.objectstore import S3Settings
from services.runtime.settings import ServiceSettings


class ConsumerOverride(BaseModel):
    """Per-consumer settings that replace the plug-in's own (CHATMESH_FORMS_CONSUMERS='{"sheets": {...}}')."""

    enabled: bool | None = Field(None, description="False: registered, but not run (its backlog waits).")
    required: bool | None = Field(None, description="Whether a submission is processed only once it is done.")
    batch_size: int | None = Field(None, ge=1, le=1000, description="Most submissions handed over at once.")
    max_deliveries: int | None = Field(None, ge=1, le=100, description="Deliveries before a dead letter.")
    ack_wait_s: float | None = Field(
        None, ge=0.5, le=3600, description="A delivery unanswered this long goes to another worker (one died)."
    )
    start: Literal["all", "new"] | None = Field(
        None, description="Where a new durable consumer starts: the stream's first submission, or new ones only."
    )


class SheetsSettings(BaseModel):
    """Where and how the sheets consumer writes its spreadsheets."""

    target: Literal["local", "s3"] = Field("local", description="A local directory or an S3-compatible bucket.")
    directory: Path = Field(Path(".chatmesh/sheets"), description="Local target: one folder per form.")
    bucket: str = Field("chatmesh-sheets", min_length=3, max_length=63, description="S3 target: the bucket.")
    endpoint: str = Field("", max_length=256, description="S3 target: the endpoint URL; empty: s3's default.")
    prefix: str = Field("sheets/", max_length=200, description="S3 target: key prefix of every sheet.")
    formats: list[Literal["xlsx", "csv"]] = Field(
        default_factory=lambda: ["xlsx", "csv"],  # type: ignore[arg-type]
        min_length=1,
        description="Files written per form.",
    )
    flush_rows: int = Field(500, ge=1, le=10_000, description="A batch is written once it holds this many rows...")
    flush_interval_s: float = Field(0.25, ge=0.0, le=300, description="...or this long after its first row came.")
    render_interval_s: float = Field(
        10.0,
        ge=0.0,
        le=3600,
        description="Least seconds between two renderings of a form's workbook and CSV (all its rows each time).",
    )
    render_cpu_share: float = Field(
        0.1,
        gt=0.0,
        le=1.0,
        description="Largest share of a core rendering may take: a form waits this many of its renders' time between.",
    )
    max_rows_per_sheet: int = Field(
        1_000_000, ge=100, le=1_048_575, description="Rows of one workbook/CSV; more go to the next file (-2, -3...)."
    )
    compact_fan_in: int = Field(
        16,
        ge=2,
        le=1000,
        description="Parts of one level merged into one part of the next once a form has this many: its part "
        "count stays near this times its levels (every batch lists them), and a row is rewritten once a level.",
    )
    forget_idle_s: float = Field(
        900.0,
        ge=0.0,
        le=86_400,
        description="A form's rows leave this process's memory once rendered and untouched this long "
        "(read back from its parts when rows come again).",
    )


class FormsSettings(ServiceSettings):
    """Forms service and worker settings."""

    model_config = SettingsConfigDict(env_prefix="CHATMESH_FORMS_")

    worker_gc_young_threshold: int = Field(
        50_000,
        ge=100,
        le=1_000_000,
        description="gc_young_threshold for the worker processes: with the interpreter's 700 a worker at "
        "500 submissions/s paused in full collections every 1-3 s (see services/runtime/collector.py).",
    )
    port: int = Field(50056, ge=0, le=65535, description="gRPC port; 0 picks a free one (tests).")
    max_concurrent_streams: int = Field(
        10_000,
        ge=1,
        le=100_000,
        description="HTTP/2 streams per connection: the gateway brings every client's submit over one or two "
        "connections, so the default of the other services (1,000) would refuse streams at 1,000 clients.",
    )
    nats: NatsSettings = Field(default_factory=NatsSettings, description="NATS (CHATMESH_FORMS_NATS__URL).")
    cql: CqlSettings = Field(default_factory=CqlSettings, description="CQL cluster (CHATMESH_FORMS_CQL__HOSTS...).")
    s3: S3Settings = Field(default_factory=S3Settings, description="S3 endpoints for the sheets consumer.")
    worker_name: str = Field("forms-worker", min_length=1, max_length=64, description="This worker's name (logs).")
    form_cache_size: int = Field(10_000, ge=10, le=1_000_000, description="Forms kept compiled in memory.")
    form_cache_ttl_s: float = Field(
        30.0, ge=0.0, le=3600, description="Longest a cached form is used without checking its version."
    )
    max_submission_bytes: int = Field(
        64 * 1024,
        ge=1024,
        le=200 * 1024,
        description="Largest sanitised submission (serialised); larger is INVALID_ARGUMENT naming `values`.",
    )
    submits_per_second: float = Field(
        50.0, gt=0, le=100_000, description="Sustained submits one signed-in user may make per second."
    )
    submit_burst: int = Field(200, ge=1, le=1_000_000, description="Submits a user may make at once.")
    anonymous_per_address_per_second: float = Field(
        1.0, gt=0, le=10_000, description="Sustained anonymous submits from one client address per second."
    )
    anonymous_address_burst: int = Field(10, ge=1, le=100_000, description="Anonymous submits at once per address.")
    anonymous_per_form_per_second: float = Field(
        200.0, gt=0, le=100_000, description="Sustained anonymous submits to one public form per second."
    )
    anonymous_form_burst: int = Field(1000, ge=1, le=1_000_000, description="Anonymous submits at once per form.")
    consumers: dict[str, ConsumerOverride] = Field(
        default_factory=dict, max_length=64, description="Per-consumer overrides of the plug-ins' settings."
    )
    consumers_cache_s: float = Field(
        2.0, ge=0.1, le=60, description="How long the list of consumers (from JetStream) is reused."
    )
    watch_poll_s: float = Field(
        1.0, ge=0.05, le=60, description="WatchSubmission re-reads a status this often if no change was announced."
    )
    stats_interval_s: float = Field(
        5.0, ge=0.5, le=300, description="How often consumer counters are sampled (processed/min, Prometheus)."
    )
    sheets: SheetsSettings = Field(default_factory=SheetsSettings, description="The sheets consumer's target.")
    screen_languages: list[str] = Field(
        default_factory=lambda: ["english", "spanish", "french", "german"],
        min_length=1,
        max_length=30,
        description="Word lists the screening consumer uses (glin-profanity language names).",
    )
    confirm_publish_timeout_s: float = Field(5.0, gt=0, le=60, description="Wait for the CHAT stream's acks.")
