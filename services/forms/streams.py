"""JetStream streams, subjects and KV buckets of the forms service (subjects carry ids only).

FORMS (``forms.>``):
- ``forms.submit.<submission_id>``: each accepted submission (a Submission message), with
  ``Nats-Msg-Id`` = ``<form_id>:<caller>:<idempotency_key>``; a subject per submission lets
  GetSubmission find one that no consumer has touched yet (last message by subject).
- ``forms.processed.<submission_id>``: published once every required consumer committed
  it (``Nats-Msg-Id`` = ``processed:<submission_id>``); the confirm consumer reads these.
- ``forms.redrive.<consumer>.<submission_id>``: a dead letter sent back to one consumer.

FORMS_DLQ (``forms_dlq.>``): ``forms_dlq.<consumer>.<form_id>.<submission_id>``, the
submission with headers naming the consumer, its last error and its delivery count.

Core NATS (never stored): ``forms_defs.changed`` (a form id: drop it from caches) and
``forms_status.changed`` (submission ids whose status rows just changed, one message per
consumer batch: wakes WatchSubmission streams), ``forms_workers.alive`` (each worker
process's heartbeat, every second: see services/forms/commits.py).
"""

from __future__ import annotations

from nats.js.api import DiscardPolicy, KeyValueConfig, RetentionPolicy, StorageType, StreamConfig

FORMS_STREAM = "FORMS"
DLQ_STREAM = "FORMS_DLQ"
SUBMIT_SUBJECTS = "forms.submit.>"
PROCESSED_SUBJECTS = "forms.processed.>"
DEFS_CHANGED_SUBJECT = "forms_defs.changed"
STATUS_CHANGED_SUBJECT = "forms_status.changed"
WORKERS_ALIVE_SUBJECT = "forms_workers.alive"

#: Largest message in FORMS (a submission is at most FormsSettings.max_submission_bytes).
MAX_MESSAGE_BYTES = 256 * 1024


def submit_subject(submission_id: str) -> str:
    """Where an accepted submission is published."""
    return f"forms.submit.{submission_id}"


def processed_subject(submission_id: str) -> str:
    """Where a processed submission is announced."""
    return f"forms.processed.{submission_id}"


def redrive_subject(consumer: str, submission_id: str) -> str:
    """Where a dead letter goes back to one consumer."""
    return f"forms.redrive.{consumer}.{submission_id}"


def redrive_subjects(consumer: str) -> str:
    """Every redriven message of one consumer."""
    return f"forms.redrive.{consumer}.>"


def dlq_subject(consumer: str, form_id: str, submission_id: str) -> str:
    """Where one consumer's dead letter of one submission waits."""
    return f"forms_dlq.{consumer}.{form_id}.{submission_id}"


def dlq_filter(consumer: str = "*", form_id: str = "*") -> str:
    """Dead letters of one consumer and/or form ("*": any)."""
    return f"forms_dlq.{consumer}.{form_id}.*"


def submission_id_of(subject: str) -> str:
    """The submission id at the end of any of the subjects above."""
    return subject.rsplit(".", 1)[-1]


STREAMS = (
    # Validated submissions; every consumer plug-in is a durable consumer on it.
    StreamConfig(
        name=FORMS_STREAM,
        subjects=["forms.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=30 * 86_400,
        max_msg_size=MAX_MESSAGE_BYTES,
        duplicate_window=120,
        discard=DiscardPolicy.OLD,
    ),
    # Submissions a consumer gave up on after its max deliveries, kept for Redrive.
    StreamConfig(
        name=DLQ_STREAM,
        subjects=["forms_dlq.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=30 * 86_400,
        max_msg_size=MAX_MESSAGE_BYTES + 4096,
    ),
)
KV_BUCKETS: tuple[KeyValueConfig, ...] = ()
