"""Submission statuses: per consumer (pending, done, failed, dead-lettered) and "processed" as a whole.

A status is read from the consumers' own rows (``submission_status``, written by each
consumer after its effect was durable; see runner.py) against the list of registered
consumers: a consumer without a row is pending. "Processed" means every required
consumer's row says done: nothing says processed while a write is still queued. A
submission that no consumer has touched yet is found in the FORMS stream by its subject.
WatchSubmission streams are woken by the consumers' core-NATS notices and re-read the
status every ``poll_s`` in case a notice was lost. No gRPC here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.errors import NotFoundError

from chatmesh.forms.v1 import forms_pb2 as pb
from services.forms.directory import ConsumerDirectory, ConsumerEntry
from services.forms.errors import SubmissionNotFound
from services.forms.store import FormStore, StatusRecord
from services.forms.streams import FORMS_STREAM, STATUS_CHANGED_SUBJECT, submit_subject
from services.runtime.errors import Unavailable

FINAL = frozenset({pb.CONSUMER_STATE_DONE, pb.CONSUMER_STATE_DEAD_LETTERED})


@dataclass(frozen=True)
class SubmissionFacts:
    """What is known of a submission without reading its values."""

    submission_id: str
    form_id: str
    form_version: int
    submitter_user_id: str
    created_ms: int


def _timestamp_ms(value: datetime | None) -> int:
    return int(value.timestamp() * 1000) if value is not None else 0


def build_status(
    submission_id: str, form_id: str, record: StatusRecord | None, entries: list[ConsumerEntry]
) -> pb.SubmissionStatus:
    """The contract's status from stored rows and the registered consumers."""
    status = pb.SubmissionStatus(submission_id=submission_id, form_id=form_id)
    rows = record.rows if record is not None else {}
    processed = any(e.required for e in entries)
    latest: datetime | None = None
    for entry in entries:
        row = rows.get(entry.name)
        item = status.consumers.add(consumer=entry.name, required=entry.required, state=pb.CONSUMER_STATE_PENDING)
        if row is not None:
            item.state = row.state  # type: ignore[assignment]
            item.deliveries = row.deliveries
            item.last_error = row.last_error
            if row.updated_at is not None:
                item.updated_at.FromMilliseconds(_timestamp_ms(row.updated_at))
        if entry.required:
            if item.state != pb.CONSUMER_STATE_DONE:
                processed = False
            elif row is not None and row.updated_at is not None and (latest is None or row.updated_at > latest):
                latest = row.updated_at
    status.processed = processed
    if processed and latest is not None:
        status.processed_at.FromMilliseconds(_timestamp_ms(latest))
    return status


def is_final(status: pb.SubmissionStatus) -> bool:
    """Every consumer is done or dead-lettered (nothing more will change by itself)."""
    return all(c.state in FINAL for c in status.consumers)


class SubmissionStatuses:
    """Reads and watches statuses."""

    def __init__(self, nc: Client, store: FormStore, directory: ConsumerDirectory, poll_s: float) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._store = store
        self._directory = directory
        self._poll_s = poll_s
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        """Listen to the consumers' status notices."""
        self._subscription = await self._nc.subscribe(STATUS_CHANGED_SUBJECT, cb=self._on_notice)

    async def stop(self) -> None:
        """Stop listening."""
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()

    async def _on_notice(self, msg: Msg) -> None:
        if not self._watchers:
            return
        for sid in msg.data.decode().split("\n"):
            for event in self._watchers.get(sid, ()):
                event.set()

    async def facts(self, submission_id: str, record: StatusRecord | None) -> SubmissionFacts:
        """The submission's form, submitter and time (from its status rows, or the FORMS stream)."""
        if record is not None and record.form_id:
            return SubmissionFacts(
                submission_id,
                record.form_id,
                record.form_version,
                record.submitter_user_id,
                _timestamp_ms(record.created_at),
            )
        try:
            raw = await self._js.get_msg(FORMS_STREAM, subject=submit_subject(submission_id))
        except NotFoundError:
            raise SubmissionNotFound(submission_id) from None
        except Exception as exc:  # nats raises timeouts and connection errors of several types
            raise Unavailable("the submission queue is unavailable; retry") from exc
        s = pb.Submission.FromString(raw.data or b"")
        created_ms = s.created_at.seconds * 1000 + s.created_at.nanos // 1_000_000
        return SubmissionFacts(submission_id, s.form_id, s.form_version, s.submitter_user_id, created_ms)

    async def status(self, submission_id: str) -> tuple[pb.SubmissionStatus, SubmissionFacts]:
        """One submission's status and facts (SubmissionNotFound if there is no such submission)."""
        records = await self._store.statuses([submission_id])
        record = records.get(submission_id)
        facts = await self.facts(submission_id, record)
        entries = await self._directory.entries()
        return build_status(submission_id, facts.form_id, record, entries), facts

    async def statuses(self, submissions: list[pb.Submission]) -> dict[str, pb.SubmissionStatus]:
        """Statuses of several stored submissions (one read per 50)."""
        records = await self._store.statuses([s.submission_id for s in submissions])
        entries = await self._directory.entries()
        return {
            s.submission_id: build_status(s.submission_id, s.form_id, records.get(s.submission_id), entries)
            for s in submissions
        }

    async def watch(self, submission_id: str, timeout_s: float) -> AsyncIterator[pb.SubmissionStatus]:
        """The status now, then each change, until every consumer is final (or ``timeout_s``, 0: none)."""
        event = asyncio.Event()
        self._watchers.setdefault(submission_id, set()).add(event)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s if timeout_s else None
        try:
            last = b""
            while True:
                event.clear()
                status, _ = await self.status(submission_id)
                encoded = status.SerializeToString(deterministic=True)
                if encoded != last:
                    last = encoded
                    yield status
                if is_final(status):
                    return
                wait = self._poll_s
                if deadline is not None:
                    left = deadline - loop.time()
                    if left <= 0:
                        return
                    wait = min(wait, left)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), wait)
        finally:
            watchers = self._watchers.get(submission_id)
            if watchers is not None:
                watchers.discard(event)
                if not watchers:
                    del self._watchers[submission_id]


def now_utc() -> datetime:
    """The current time (UTC)."""
    return datetime.now(UTC)
