"""Reading submissions: a form's pages for its owner, one submission by id. No gRPC here."""

from __future__ import annotations

import base64
import binascii
import uuid

from chatmesh.forms.v1 import forms_pb2 as pb
from services.forms.definitions import FormDefinitions
from services.forms.errors import BadPageToken
from services.forms.status import SubmissionStatuses
from services.forms.store import FormStore, StoredSubmission, bucket_of, submission_created_ms

DEFAULT_PAGE = 50


def _encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(token: str) -> tuple[int, str]:
    try:
        parts = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().split("|")
        if len(parts) != 3 or parts[0] != "s1":
            raise ValueError
        return int(parts[1]), str(uuid.UUID(parts[2]))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadPageToken() from None


def submission_pb(stored: StoredSubmission, status: pb.SubmissionStatus | None) -> pb.Submission:
    """The contract's Submission of a stored one, with its status and screening."""
    submission = pb.Submission()
    submission.CopyFrom(stored.submission)
    if status is not None:
        submission.status.CopyFrom(status)
    if stored.screened:
        submission.screening.flagged = stored.flagged
        submission.screening.flagged_keys.extend(stored.flagged_keys)
    return submission


class SubmissionBook:
    """A form's stored submissions, as its owner (or the submitter) reads them."""

    def __init__(self, store: FormStore, definitions: FormDefinitions, statuses: SubmissionStatuses) -> None:
        self._store = store
        self._definitions = definitions
        self._statuses = statuses

    async def page(self, owner: str, form_id: str, page_size: int, token: str) -> tuple[list[pb.Submission], str]:
        """Newest first: the form's submissions after ``token``, with statuses, and the next token."""
        await self._definitions.owned(owner, form_id)
        size = page_size or DEFAULT_PAGE
        bucket, before = _decode(token) if token else (None, None)
        buckets = await self._store.submission_buckets(form_id, None if bucket is None else bucket + 1)
        found: list[StoredSubmission] = []
        for b in buckets:
            rows = await self._store.submissions_page(
                form_id, b, size + 1 - len(found), before if b == bucket else None
            )
            found.extend(rows)
            if len(found) > size:
                break
        page, more = found[:size], len(found) > size
        statuses = await self._statuses.statuses([s.submission for s in page])
        result = [submission_pb(s, statuses.get(s.submission.submission_id)) for s in page]
        next_token = ""
        if more and page:
            last = page[-1].submission
            # The bucket of the last row given (a page can end inside a bucket).
            next_token = _encode(f"s1|{bucket_of(submission_created_ms(last))}|{last.submission_id}")
        return result, next_token

    async def values_for(
        self, user_id: str | None, form_id: str, submitter: str, created_ms: int, submission_id: str
    ) -> StoredSubmission | None:
        """The stored submission if ``user_id`` may read its values (owner or submitter), else None."""
        if user_id is None:
            return None
        if user_id != submitter:
            form = await self._definitions.get(form_id)
            if form.owner_user_id != user_id:
                return None
        return await self._store.submission(form_id, created_ms, submission_id)
