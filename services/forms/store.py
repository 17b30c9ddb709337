"""Forms, submissions and their statuses in CQL (ScyllaDB-compatible; no secondary indexes).

Tables:
- ``forms``: a form's latest definition (the Form message) by id, with its owner and version.
- ``form_versions``: every version's definition, by (form, version): a submission is
  always read with the version it was checked against.
- ``forms_by_owner``: the owner's forms, newest first: ListForms is one partition read.
- ``form_names``: (owner, name) -> form, claimed with a lightweight transaction.
- ``form_submissions``: partitioned by (form_id, bucket), bucket = UTC day of the
  submission, clustered by submission id (UUIDv7: time order) descending; written by the
  store consumer, idempotent by submission id (the same message writes the same row).
  ``form_submission_buckets`` lists the buckets that hold rows, so a page walks only those.
- ``submission_status``: one row per (submission, consumer) with its state; the
  submission's form, version, submitter and time are static columns, so any consumer's
  write makes the submission findable by id.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chatmesh.forms.v1 import forms_pb2 as pb
from services.runtime.cql import CqlSession

DAY_MS = 86_400_000

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS forms (
        form_id uuid PRIMARY KEY, owner_user_id uuid, name text, version int, definition blob,
        created_at timestamp)""",
    """CREATE TABLE IF NOT EXISTS form_versions (
        form_id uuid, version int, definition blob, PRIMARY KEY ((form_id), version))""",
    """CREATE TABLE IF NOT EXISTS forms_by_owner (
        owner_user_id uuid, created_at timestamp, form_id uuid, definition blob,
        PRIMARY KEY ((owner_user_id), created_at, form_id)) WITH CLUSTERING ORDER BY (created_at DESC, form_id DESC)""",
    """CREATE TABLE IF NOT EXISTS form_names (owner_user_id uuid, name text, form_id uuid,
        PRIMARY KEY ((owner_user_id, name)))""",
    """CREATE TABLE IF NOT EXISTS form_submissions (
        form_id uuid, bucket int, submission_id uuid, form_version int, submitter_user_id text,
        idempotency_key text, submission blob, created_at timestamp, screened boolean, flagged boolean,
        flagged_keys list<text>,
        PRIMARY KEY ((form_id, bucket), submission_id)) WITH CLUSTERING ORDER BY (submission_id DESC)""",
    """CREATE TABLE IF NOT EXISTS form_submission_buckets (form_id uuid, bucket int,
        PRIMARY KEY ((form_id), bucket)) WITH CLUSTERING ORDER BY (bucket DESC)""",
    """CREATE TABLE IF NOT EXISTS submission_status (
        submission_id uuid, consumer text, state int, deliveries int, last_error text, updated_at timestamp,
        form_id uuid static, form_version int static, submitter_user_id text static, created_at timestamp static,
        PRIMARY KEY ((submission_id), consumer))""",
)


@functools.lru_cache(maxsize=65_536)
def as_uuid(value: str) -> uuid.UUID:
    """``uuid.UUID(value)``, remembered (the same form and user ids are bound again and again)."""
    return uuid.UUID(value)


def bucket_of(created_at_ms: int) -> int:
    """The day bucket of a submission made at ``created_at_ms`` (unix milliseconds)."""
    return created_at_ms // DAY_MS


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _ms(value: datetime) -> datetime:
    """CQL timestamps keep milliseconds; so do we, so a row reads back as written."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class StatusRow:
    """One consumer's state for one submission, as stored."""

    consumer: str
    state: int
    deliveries: int
    last_error: str
    updated_at: datetime | None


@dataclass(frozen=True)
class StatusRecord:
    """A submission's stored statuses and the facts every status row carries."""

    submission_id: str
    form_id: str
    form_version: int
    submitter_user_id: str
    created_at: datetime | None
    rows: dict[str, StatusRow]


@dataclass(frozen=True)
class StatusWrite:
    """A consumer's new state for one submission.

    ``facts``: also write the submission's form, version, submitter and time (static
    columns). One consumer's row carrying them is enough (the store consumer's, and every
    failure's); until then a reader finds them in the FORMS stream.
    """

    submission: pb.Submission
    consumer: str
    state: int
    deliveries: int
    last_error: str
    at: datetime
    facts: bool = True


@dataclass(frozen=True)
class StoredSubmission:
    """A stored submission and its screening."""

    submission: pb.Submission
    screened: bool
    flagged: bool
    flagged_keys: tuple[str, ...]


_STATUS_UPSERT = (
    "UPDATE submission_status SET state = ?, deliveries = ?, last_error = ?, updated_at = ?, form_id = ?, "
    "form_version = ?, submitter_user_id = ?, created_at = ? WHERE submission_id = ? AND consumer = ?"
)
_STATE_UPSERT = (
    "UPDATE submission_status SET state = ?, deliveries = ?, last_error = ?, updated_at = ? "
    "WHERE submission_id = ? AND consumer = ?"
)
_SUBMISSION_INSERT = (
    "INSERT INTO form_submissions (form_id, bucket, submission_id, form_version, submitter_user_id, idempotency_key, "
    "submission, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_BUCKET_INSERT = "INSERT INTO form_submission_buckets (form_id, bucket) VALUES (?, ?)"
_SCREEN_UPDATE = (
    "UPDATE form_submissions SET screened = true, flagged = ?, flagged_keys = ? "
    "WHERE form_id = ? AND bucket = ? AND submission_id = ?"
)


PARTITION_BATCH_ROWS = 100
"""Most rows of one partition written in one unlogged batch."""
PARTITION_BATCH_BYTES = 96 * 1024
"""Most bytes of values in one such batch (under the node's 128 KiB batch warning)."""


def _partition_chunks(
    rows: Sequence[tuple[Any, ...]], size_of: Callable[[tuple[Any, ...]], int]
) -> Iterator[Sequence[tuple[Any, ...]]]:
    """``rows`` of one partition cut into batches of at most PARTITION_BATCH_ROWS rows and _BYTES bytes."""
    start, used = 0, 0
    for i, row in enumerate(rows):
        size = size_of(row) + 64
        if i > start and (i - start >= PARTITION_BATCH_ROWS or used + size > PARTITION_BATCH_BYTES):
            yield rows[start:i]
            start, used = i, 0
        used += size
    if start < len(rows):
        yield rows[start:]


def submission_created_ms(submission: pb.Submission) -> int:
    """When Submit accepted ``submission``, in unix milliseconds."""
    return submission.created_at.seconds * 1000 + submission.created_at.nanos // 1_000_000


class FormStore:
    """CQL reads and writes of the forms service and its consumers."""

    def __init__(self, cql: CqlSession) -> None:
        self._cql = cql

    # -- forms ---------------------------------------------------------------------

    async def claim_name(self, owner: str, name: str, form_id: str) -> str:
        """The form holding ``name`` for ``owner``: ``form_id`` if this call claimed it."""
        rows = await self._cql.execute(
            "INSERT INTO form_names (owner_user_id, name, form_id) VALUES (?, ?, ?) IF NOT EXISTS",
            (as_uuid(owner), name, as_uuid(form_id)),
            prepare=True,
        )
        return form_id if rows[0]["[applied]"] else str(rows[0]["form_id"])

    async def put_new_form(self, form: pb.Form) -> None:
        """Write version 1 of a new form everywhere it is read from."""
        definition = form.SerializeToString()
        form_id, owner = as_uuid(form.form_id), as_uuid(form.owner_user_id)
        created = _ms(form.created_at.ToDatetime(UTC))
        await self._cql.execute(
            "INSERT INTO form_versions (form_id, version, definition) VALUES (?, ?, ?)",
            (form_id, form.version, definition),
            prepare=True,
        )
        await self._cql.execute(
            "INSERT INTO forms (form_id, owner_user_id, name, version, definition, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS",
            (form_id, owner, form.name, form.version, definition, created),
            prepare=True,
        )
        await self._cql.execute(
            "INSERT INTO forms_by_owner (owner_user_id, created_at, form_id, definition) VALUES (?, ?, ?, ?)",
            (owner, created, form_id, definition),
            prepare=True,
        )

    async def update_form(self, form: pb.Form, expected_version: int) -> int | None:
        """Store ``form`` as the next version if the stored one is ``expected_version``.

        Returns:
            None when applied, else the stored version (someone changed it first).
        """
        definition = form.SerializeToString()
        form_id = as_uuid(form.form_id)
        rows = await self._cql.execute(
            "UPDATE forms SET version = ?, definition = ? WHERE form_id = ? IF version = ?",
            (form.version, definition, form_id, expected_version),
            prepare=True,
        )
        if not rows[0]["[applied]"]:
            return int(rows[0]["version"])
        # Only the winner of the transaction writes the version's row (a loser must not
        # overwrite it); until it is written, the latest version is read from `forms`.
        await self._cql.execute(
            "INSERT INTO form_versions (form_id, version, definition) VALUES (?, ?, ?)",
            (form_id, form.version, definition),
            prepare=True,
        )
        await self._cql.execute(
            "UPDATE forms_by_owner SET definition = ? WHERE owner_user_id = ? AND created_at = ? AND form_id = ?",
            (definition, as_uuid(form.owner_user_id), _ms(form.created_at.ToDatetime(UTC)), form_id),
            prepare=True,
        )
        return None

    async def form(self, form_id: str) -> pb.Form | None:
        """A form's latest definition."""
        rows = await self._cql.execute(
            "SELECT definition FROM forms WHERE form_id = ?", (as_uuid(form_id),), prepare=True
        )
        return pb.Form.FromString(rows[0]["definition"]) if rows else None

    async def form_version(self, form_id: str, version: int) -> pb.Form | None:
        """One version of a form's definition."""
        rows = await self._cql.execute(
            "SELECT definition FROM form_versions WHERE form_id = ? AND version = ?",
            (as_uuid(form_id), version),
            prepare=True,
        )
        if rows:
            return pb.Form.FromString(rows[0]["definition"])
        latest = await self.form(form_id)
        return latest if latest is not None and latest.version == version else None

    async def forms_of(self, owner: str, limit: int, after: tuple[datetime, str] | None) -> list[pb.Form]:
        """The owner's forms, newest first, after the cursor (created_at, form_id)."""
        if after is None:
            rows = await self._cql.execute(
                "SELECT definition FROM forms_by_owner WHERE owner_user_id = ? LIMIT ?",
                (as_uuid(owner), limit),
                prepare=True,
            )
        else:
            rows = await self._cql.execute(
                "SELECT definition FROM forms_by_owner WHERE owner_user_id = ? AND (created_at, form_id) < (?, ?) "
                "LIMIT ?",
                (as_uuid(owner), after[0], as_uuid(after[1]), limit),
                prepare=True,
            )
        return [pb.Form.FromString(r["definition"]) for r in rows]

    # -- submissions -----------------------------------------------------------------

    async def put_submissions(self, submissions: Sequence[pb.Submission], statuses: Sequence[StatusWrite]) -> None:
        """Store submissions (idempotent by id: the same message writes the same row) and statuses.

        The rows of one partition (a form's day) go in unlogged single-partition batches
        (one mutation each, at most ``PARTITION_BATCH_ROWS`` rows or ``PARTITION_BATCH_BYTES``),
        all sent at once with the buckets' rows.
        """
        by_partition: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
        for s in submissions:
            created_ms = submission_created_ms(s)
            bucket = bucket_of(created_ms)
            by_partition.setdefault((s.form_id, bucket), []).append(
                (
                    as_uuid(s.form_id),
                    bucket,
                    as_uuid(s.submission_id),
                    s.form_version,
                    s.submitter_user_id,
                    s.idempotency_key,
                    s.SerializeToString(),
                    datetime.fromtimestamp(created_ms / 1000, UTC),
                )
            )
        writes = [
            self._cql.execute_many(_SUBMISSION_INSERT, chunk, partitions_per_request=len(chunk))
            for rows in by_partition.values()
            for chunk in _partition_chunks(rows, lambda row: len(row[6]) + len(row[5]) + len(row[4]))
        ]
        writes.append(self._cql.execute_many(_BUCKET_INSERT, [(as_uuid(f), b) for f, b in by_partition]))
        await asyncio.gather(*writes)
        await self.put_statuses(statuses)

    async def mark_screened(self, verdicts: Sequence[tuple[pb.Submission, bool, list[str]]]) -> None:
        """Record the screening verdict of each submission on its stored row (an upsert: order-free).

        One unlogged single-partition batch per form and day (bounded like put_submissions').
        """
        by_partition: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
        for s, flagged, keys in verdicts:
            bucket = bucket_of(submission_created_ms(s))
            by_partition.setdefault((s.form_id, bucket), []).append(
                (flagged, keys, as_uuid(s.form_id), bucket, as_uuid(s.submission_id))
            )
        await asyncio.gather(
            *(
                self._cql.execute_many(_SCREEN_UPDATE, chunk, partitions_per_request=len(chunk))
                for rows in by_partition.values()
                for chunk in _partition_chunks(rows, lambda row: sum(len(k) for k in row[1]))
            )
        )

    async def submission_buckets(self, form_id: str, before: int | None) -> list[int]:
        """The form's buckets that hold submissions, newest first, before ``before`` (exclusive)."""
        if before is None:
            rows = await self._cql.execute(
                "SELECT bucket FROM form_submission_buckets WHERE form_id = ?", (as_uuid(form_id),), prepare=True
            )
        else:
            rows = await self._cql.execute(
                "SELECT bucket FROM form_submission_buckets WHERE form_id = ? AND bucket < ?",
                (as_uuid(form_id), before),
                prepare=True,
            )
        return [int(r["bucket"]) for r in rows]

    async def submissions_page(
        self, form_id: str, bucket: int, limit: int, before_id: str | None
    ) -> list[StoredSubmission]:
        """Submissions of one bucket, newest first, older than ``before_id``."""
        columns = "submission, screened, flagged, flagged_keys"
        if before_id is None:
            rows = await self._cql.execute(
                f"SELECT {columns} FROM form_submissions WHERE form_id = ? AND bucket = ? LIMIT ?",
                (as_uuid(form_id), bucket, limit),
                prepare=True,
            )
        else:
            rows = await self._cql.execute(
                f"SELECT {columns} FROM form_submissions WHERE form_id = ? AND bucket = ? AND submission_id < ? "
                "LIMIT ?",
                (as_uuid(form_id), bucket, as_uuid(before_id), limit),
                prepare=True,
            )
        return [_stored(r) for r in rows if r["submission"] is not None]

    async def submission(self, form_id: str, created_ms: int, submission_id: str) -> StoredSubmission | None:
        """One stored submission."""
        rows = await self._cql.execute(
            "SELECT submission, screened, flagged, flagged_keys FROM form_submissions "
            "WHERE form_id = ? AND bucket = ? AND submission_id = ?",
            (as_uuid(form_id), bucket_of(created_ms), as_uuid(submission_id)),
            prepare=True,
        )
        return _stored(rows[0]) if rows and rows[0]["submission"] is not None else None

    # -- statuses --------------------------------------------------------------------

    async def put_statuses(self, statuses: Iterable[StatusWrite]) -> None:
        """Write consumers' states (each row an upsert)."""
        params = []
        states = []
        for w in statuses:
            s = w.submission
            if not w.facts:
                states.append((w.state, w.deliveries, w.last_error, w.at, as_uuid(s.submission_id), w.consumer))
                continue
            params.append(
                (
                    w.state,
                    w.deliveries,
                    w.last_error,
                    w.at,
                    as_uuid(s.form_id),
                    s.form_version,
                    s.submitter_user_id,
                    datetime.fromtimestamp(submission_created_ms(s) / 1000, UTC),
                    as_uuid(s.submission_id),
                    w.consumer,
                )
            )
        if params:
            await self._cql.execute_many(_STATUS_UPSERT, params)
        if states:
            await self._cql.execute_many(_STATE_UPSERT, states)

    async def states(self, submission_ids: Sequence[str]) -> dict[str, dict[str, tuple[int, datetime | None]]]:
        """Each consumer's (state, updated_at) for each of ``submission_ids`` (one request per 50 ids)."""
        found: dict[str, dict[str, tuple[int, datetime | None]]] = {}
        for start in range(0, len(submission_ids), 50):
            chunk = [as_uuid(s) for s in submission_ids[start : start + 50]]
            rows = await self._cql.execute(
                "SELECT submission_id, consumer, state, updated_at FROM submission_status WHERE submission_id IN ?",
                (chunk,),
                prepare=True,
            )
            for row in rows:
                if row["consumer"] is not None and row["state"] is not None:
                    by_consumer = found.setdefault(str(row["submission_id"]), {})
                    by_consumer[row["consumer"]] = (int(row["state"]), _utc(row["updated_at"]))
        return found

    async def statuses(self, submission_ids: Sequence[str]) -> dict[str, StatusRecord]:
        """The stored statuses of each of ``submission_ids`` that has any (one request per 50 ids)."""
        found: dict[str, StatusRecord] = {}
        for start in range(0, len(submission_ids), 50):
            chunk = [as_uuid(s) for s in submission_ids[start : start + 50]]
            rows = await self._cql.execute(
                "SELECT submission_id, consumer, state, deliveries, last_error, updated_at, form_id, form_version, "
                "submitter_user_id, created_at FROM submission_status WHERE submission_id IN ?",
                (chunk,),
                prepare=True,
            )
            for row in rows:
                _fold_status(found, row)
        return found


def _fold_status(found: dict[str, StatusRecord], row: dict[str, Any]) -> None:
    sid = str(row["submission_id"])
    record = found.get(sid)
    if record is None:
        record = found[sid] = StatusRecord(
            submission_id=sid,
            form_id=str(row["form_id"]) if row["form_id"] else "",
            form_version=int(row["form_version"] or 0),
            submitter_user_id=row["submitter_user_id"] or "",
            created_at=_utc(row["created_at"]),
            rows={},
        )
    if row["consumer"] is not None and row["state"] is not None:
        record.rows[row["consumer"]] = StatusRow(
            consumer=row["consumer"],
            state=int(row["state"]),
            deliveries=int(row["deliveries"] or 0),
            last_error=row["last_error"] or "",
            updated_at=_utc(row["updated_at"]),
        )


def _stored(row: dict[str, Any]) -> StoredSubmission:
    return StoredSubmission(
        submission=pb.Submission.FromString(row["submission"]),
        screened=bool(row["screened"]),
        flagged=bool(row["flagged"]),
        flagged_keys=tuple(row["flagged_keys"] or ()),
    )
