"""Submit: rate limits, checking and sanitising, then one acknowledged JetStream publish.

The hot path reads no database: the form comes from :class:`FormDefinitions`' cache, the
checker was compiled with it, and the submission is published to FORMS with
``Nats-Msg-Id`` = ``<form>:<caller>:<idempotency key>`` through the process's
:class:`AckedPublisher` (one reply subscription; concurrent calls share its flushes).
The answer comes only once JetStream acknowledged; anything else is UNAVAILABLE and
nothing was accepted, so the caller retries with the same key. A retry JetStream has seen
is answered with the first submission (its PubAck names the first one's sequence).
No gRPC here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from nats.js import JetStreamContext

from chatmesh.forms.v1 import forms_pb2 as pb
from services.forms.definitions import FormDefinitions
from services.forms.errors import InvalidValues, SignInRequired, SubmittingTooFast
from services.forms.ids import uuid7
from services.forms.streams import FORMS_STREAM, submit_subject
from services.runtime.bus import AckedPublisher
from services.runtime.errors import ChatmeshError, InvalidArgument, Unavailable
from services.runtime.ratelimit import RateLimiter


@dataclass(frozen=True)
class SubmitLimits:
    """Rate limiters of Submit and the size limit of one submission."""

    per_user: RateLimiter
    per_address: RateLimiter
    per_form: RateLimiter
    max_submission_bytes: int
    publish_timeout_s: float


@dataclass(frozen=True)
class Accepted:
    """What Submit answers."""

    submission_id: str
    form_version: int
    created_at_ms: int
    duplicate: bool


class SubmissionIntake:
    """Takes submissions in."""

    def __init__(
        self, definitions: FormDefinitions, publisher: AckedPublisher, js: JetStreamContext, limits: SubmitLimits
    ) -> None:
        self._definitions = definitions
        self._publisher = publisher
        self._js = js
        self._limits = limits

    def _check_rate(self, user_id: str | None, client_address: str, form_id: str) -> None:
        limits = self._limits
        now = time.monotonic()
        if user_id is not None:
            wait = limits.per_user.acquire(user_id, now)
            if wait:
                raise SubmittingTooFast("from this account", wait)
            return
        wait = limits.per_address.acquire(client_address, now)
        if wait:
            raise SubmittingTooFast("from this address", wait)
        wait = limits.per_form.acquire(form_id, now)
        if wait:
            raise SubmittingTooFast("to this form without an account", wait)

    async def submit(
        self,
        user_id: str | None,
        client_address: str,
        form_id: str,
        idempotency_key: str,
        values: Mapping[str, pb.FieldValue],
    ) -> Accepted:
        """Check, sanitise and publish one submission (``user_id`` None: anonymous).

        Raises:
            FormNotFound, SignInRequired, SubmittingTooFast, InvalidValues, InvalidArgument
            (too large), Unavailable (JetStream did not acknowledge: nothing accepted).
        """
        live = await self._definitions.live(form_id)
        if user_id is None and not live.form.public:
            raise SignInRequired()
        self._check_rate(user_id, client_address, form_id)
        submission = pb.Submission()
        violations = live.compiled.check(values, submission.values)
        if violations:
            raise InvalidValues(violations)
        now_ms = int(time.time() * 1000)
        submission_id = uuid7(now_ms)
        submission.submission_id = submission_id
        submission.form_id = form_id
        submission.form_version = live.compiled.version
        submission.submitter_user_id = user_id or ""
        submission.idempotency_key = idempotency_key
        submission.created_at.FromMilliseconds(now_ms)
        payload = submission.SerializeToString()
        if len(payload) > self._limits.max_submission_bytes:
            raise InvalidArgument(
                "values", f"the submission is {len(payload)} bytes; at most {self._limits.max_submission_bytes}"
            )
        caller = user_id if user_id is not None else f"anon:{client_address}"
        headers = {"Nats-Msg-Id": f"{form_id}:{caller}:{idempotency_key}"}
        try:
            acks = await self._publisher.publish(
                [(submit_subject(submission_id), payload, headers)], self._limits.publish_timeout_s
            )
        except ChatmeshError:
            raise
        except Exception as exc:  # nats raises connection errors of several types
            raise Unavailable("the submission queue is unavailable; nothing was accepted, retry") from exc
        ack = acks[0]
        if ack.get("duplicate"):
            return await self._first(int(ack["seq"]))
        return Accepted(submission_id, live.compiled.version, now_ms, duplicate=False)

    async def _first(self, seq: int) -> Accepted:
        """The submission a retried key was first accepted as."""
        try:
            msg = await self._js.get_msg(FORMS_STREAM, seq)
        except Exception as exc:  # the stream could not be read: the retry may try again
            raise Unavailable("the submission queue is unavailable; retry") from exc
        first = pb.Submission.FromString(msg.data or b"")
        created_ms = first.created_at.seconds * 1000 + first.created_at.nanos // 1_000_000
        return Accepted(first.submission_id, first.form_version, created_ms, duplicate=True)
