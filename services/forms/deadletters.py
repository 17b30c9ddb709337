"""Dead letters: submissions a consumer gave up on, kept in FORMS_DLQ until Redrive.

A dead letter is the submission (its FORMS payload) on
``forms_dlq.<consumer>.<form>.<submission>``, with headers naming the consumer, its last
error and the deliveries it took. Its id is its FORMS_DLQ sequence. Redrive publishes it
back to FORMS on ``forms.redrive.<consumer>.<submission>`` (only that consumer reads it;
``Nats-Msg-Id`` = ``redrive:<id>``, so a retried Redrive publishes it once), marks that
consumer pending again and deletes the dead letter. No gRPC here.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from chatmesh.forms.v1 import forms_pb2 as pb
from services.forms.store import FormStore, StatusWrite
from services.forms.streams import DLQ_STREAM, dlq_filter, dlq_subject, redrive_subject
from services.runtime.bus import AckedPublisher
from services.runtime.errors import ChatmeshError, Unavailable

MAX_ERROR = 1024
SCAN_LIMIT = 10_000
"""Most dead letters one listing reads."""

H_CONSUMER, H_ERROR, H_DELIVERIES = "Chatmesh-Consumer", "Chatmesh-Error", "Chatmesh-Deliveries"


def short_error(error: str) -> str:
    """An error as kept: one line, at most MAX_ERROR characters."""
    return " ".join(error.split())[:MAX_ERROR]


@dataclass(frozen=True)
class DeadLetter:
    """A dead letter as listed."""

    dead_letter_id: str
    consumer: str
    submission: pb.Submission
    deliveries: int
    last_error: str
    dead_lettered_at: datetime | None


class DeadLetters:
    """Writing, listing and redriving dead letters."""

    def __init__(self, nc: Client, publisher: AckedPublisher, store: FormStore, timeout_s: float) -> None:
        self._nc = nc
        self._js = nc.jetstream(timeout=timeout_s)
        self._publisher = publisher
        self._store = store
        self._timeout_s = timeout_s

    async def bury(self, consumer: str, items: Sequence[tuple[pb.Submission, int, int, str]]) -> None:
        """Publish dead letters of ``consumer``: (submission, deliveries, FORMS sequence, error) each."""
        messages = []
        for submission, deliveries, seq, error in items:
            headers = {
                "Nats-Msg-Id": f"dlq:{consumer}:{seq}",
                H_CONSUMER: consumer,
                H_ERROR: short_error(error) or "failed",
                H_DELIVERIES: str(deliveries),
            }
            subject = dlq_subject(consumer, submission.form_id, submission.submission_id)
            messages.append((subject, submission.SerializeToString(), headers))
        await self._publisher.publish(messages, self._timeout_s)

    async def list(self, consumer: str, form_ids: Collection[str], single_form: str = "") -> list[DeadLetter]:
        """Dead letters of ``consumer`` ("" any) on the forms ``form_ids``, newest first (at most SCAN_LIMIT read)."""
        subject = dlq_filter(consumer or "*", single_form or "*")
        config = ConsumerConfig(
            name=uuid.uuid4().hex,
            filter_subject=subject,
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.ALL,
            inactive_threshold=30.0,
            mem_storage=True,
            num_replicas=1,
        )
        found: list[DeadLetter] = []
        try:
            info = await self._js.add_consumer(DLQ_STREAM, config)
            pending = info.num_pending or 0
            if pending:
                sub = await self._js.pull_subscribe_bind(consumer=config.name, stream=DLQ_STREAM)
                try:
                    while pending > 0 and len(found) < SCAN_LIMIT:
                        try:
                            batch = await sub.fetch(min(pending, 256), self._timeout_s)
                        except TimeoutError:
                            break
                        for msg in batch:
                            meta = msg.metadata
                            pending = meta.num_pending
                            letter = _letter(meta.sequence.stream, msg.headers or {}, msg.data, meta.timestamp)
                            if letter.submission.form_id in form_ids:
                                found.append(letter)
                finally:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
        except NotFoundError:
            return []
        except ChatmeshError:
            raise
        except Exception as exc:  # nats raises timeouts and connection errors of several types
            raise Unavailable("the dead-letter stream is unavailable; retry") from exc
        finally:
            with contextlib.suppress(Exception):
                await self._js.delete_consumer(DLQ_STREAM, config.name or "")
        found.sort(key=lambda d: -int(d.dead_letter_id))
        return found

    async def get(self, dead_letter_id: str) -> DeadLetter | None:
        """One dead letter by id (None: gone or never there)."""
        try:
            seq = int(dead_letter_id)
        except ValueError:
            return None
        if seq <= 0:
            return None
        try:
            raw = await self._js.get_msg(DLQ_STREAM, seq)
        except NotFoundError:
            return None
        except Exception as exc:  # as above
            raise Unavailable("the dead-letter stream is unavailable; retry") from exc
        return _letter(seq, raw.headers or {}, raw.data or b"", raw.time)

    async def redrive(self, letters: Sequence[DeadLetter]) -> int:
        """Send ``letters`` back to their consumers; return how many went."""
        if not letters:
            return 0
        now = datetime.now(UTC)
        # Pending first: the consumer's own "done" comes after (never overwritten by this).
        await self._store.put_statuses(
            StatusWrite(d.submission, d.consumer, pb.CONSUMER_STATE_PENDING, 0, "", now) for d in letters
        )
        messages = [
            (
                redrive_subject(d.consumer, d.submission.submission_id),
                d.submission.SerializeToString(),
                {"Nats-Msg-Id": f"redrive:{d.dead_letter_id}"},
            )
            for d in letters
        ]
        try:
            await self._publisher.publish(messages, self._timeout_s)
            for d in letters:
                with contextlib.suppress(NotFoundError):
                    await self._js.delete_msg(DLQ_STREAM, int(d.dead_letter_id))
        except ChatmeshError:
            raise
        except Exception as exc:  # as above
            raise Unavailable("the submission queue is unavailable; retry the redrive") from exc
        return len(letters)


def _letter(seq: int, headers: dict[str, str], data: bytes, at: datetime | None = None) -> DeadLetter:
    submission = pb.Submission.FromString(data or b"")
    return DeadLetter(
        dead_letter_id=str(seq),
        consumer=headers.get(H_CONSUMER, ""),
        submission=submission,
        deliveries=int(headers.get(H_DELIVERIES, "0") or 0),
        last_error=headers.get(H_ERROR, ""),
        dead_lettered_at=at,
    )
