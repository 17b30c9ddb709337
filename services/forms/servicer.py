"""FormsService: proto messages in, domain calls, proto messages out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from chatmesh.common.v1 import common_pb2
from chatmesh.forms.v1 import forms_pb2 as pb
from chatmesh.forms.v1 import forms_pb2_grpc
from services.forms.deadletters import DeadLetter
from services.forms.definitions import FormDefinitions
from services.forms.directory import ConsumerDirectory
from services.forms.errors import SignInRequired
from services.forms.redrive import DeadLetterDesk
from services.forms.stats import ConsumerStatsReader
from services.forms.status import SubmissionStatuses
from services.forms.submissions import SubmissionBook, submission_pb
from services.forms.submit import SubmissionIntake
from services.runtime.clients import HEADER, Network, client_address
from services.runtime.interceptors import Context, current_principal, optional_principal

SERVICE = "/chatmesh.forms.v1.FormsService/"
#: Methods that take calls without a token (the servicer decides what an anonymous caller may do).
OPTIONAL_AUTH_METHODS = tuple(SERVICE + m for m in ("GetForm", "Submit", "GetSubmission", "WatchSubmission"))


@dataclass(frozen=True)
class FormsDomain:
    """The use cases the servicer translates to."""

    definitions: FormDefinitions
    intake: SubmissionIntake
    statuses: SubmissionStatuses
    submissions: SubmissionBook
    dead_letters: DeadLetterDesk
    directory: ConsumerDirectory
    stats: ConsumerStatsReader
    trusted_proxies: tuple[Network, ...]


def _dead_letter_pb(d: DeadLetter) -> pb.DeadLetter:
    letter = pb.DeadLetter(
        dead_letter_id=d.dead_letter_id,
        consumer=d.consumer,
        submission_id=d.submission.submission_id,
        form_id=d.submission.form_id,
        deliveries=d.deliveries,
        last_error=d.last_error,
    )
    if d.dead_lettered_at is not None:
        letter.dead_lettered_at.FromDatetime(d.dead_lettered_at)
    return letter


class FormsServicer(forms_pb2_grpc.FormsServiceServicer):
    """Every RPC acts for the caller of the access token (or an anonymous caller where allowed)."""

    def __init__(self, domain: FormsDomain) -> None:
        self._d = domain

    def _client_address(self, context: Context) -> str:
        header = None
        for key, value in context.invocation_metadata() or ():
            if key == HEADER and isinstance(value, str):
                header = value
        return client_address(context.peer() or "", header, self._d.trusted_proxies)

    async def CreateForm(self, request: pb.CreateFormRequest, context: Context) -> pb.CreateFormResponse:
        form = await self._d.definitions.create(
            current_principal().user_id,
            request.name,
            request.title,
            request.description,
            request.fields,
            request.public,
        )
        return pb.CreateFormResponse(form=form)

    async def GetForm(self, request: pb.GetFormRequest, context: Context) -> pb.GetFormResponse:
        form = await self._d.definitions.get(request.form_id)
        if optional_principal() is None and not form.public:
            raise SignInRequired()
        return pb.GetFormResponse(form=form)

    async def ListForms(self, request: pb.ListFormsRequest, context: Context) -> pb.ListFormsResponse:
        forms, token = await self._d.definitions.list(
            current_principal().user_id, request.page.page_size, request.page.page_token
        )
        return pb.ListFormsResponse(forms=forms, page=common_pb2.PageResponse(next_page_token=token))

    async def UpdateForm(self, request: pb.UpdateFormRequest, context: Context) -> pb.UpdateFormResponse:
        form = await self._d.definitions.update(
            current_principal().user_id,
            request.form_id,
            request.expected_version,
            request.title,
            request.description,
            request.fields,
            request.public,
        )
        return pb.UpdateFormResponse(form=form)

    async def Submit(self, request: pb.SubmitRequest, context: Context) -> pb.SubmitResponse:
        principal = optional_principal()
        accepted = await self._d.intake.submit(
            principal.user_id if principal is not None else None,
            self._client_address(context) if principal is None else "",
            request.form_id,
            request.idempotency_key,
            request.values,
        )
        response = pb.SubmitResponse(
            submission_id=accepted.submission_id, duplicate=accepted.duplicate, form_version=accepted.form_version
        )
        response.created_at.FromMilliseconds(accepted.created_at_ms)
        return response

    async def GetSubmission(self, request: pb.GetSubmissionRequest, context: Context) -> pb.GetSubmissionResponse:
        status, facts = await self._d.statuses.status(request.submission_id)
        principal = optional_principal()
        response = pb.GetSubmissionResponse(status=status)
        stored = await self._d.submissions.values_for(
            principal.user_id if principal is not None else None,
            facts.form_id,
            facts.submitter_user_id,
            facts.created_ms,
            facts.submission_id,
        )
        if stored is not None:
            response.submission.CopyFrom(submission_pb(stored, status))
        return response

    async def WatchSubmission(
        self, request: pb.WatchSubmissionRequest, context: Context
    ) -> AsyncIterator[pb.WatchSubmissionResponse]:
        async for status in self._d.statuses.watch(request.submission_id, request.timeout_s):
            yield pb.WatchSubmissionResponse(status=status)

    async def ListSubmissions(self, request: pb.ListSubmissionsRequest, context: Context) -> pb.ListSubmissionsResponse:
        submissions, token = await self._d.submissions.page(
            current_principal().user_id, request.form_id, request.page.page_size, request.page.page_token
        )
        return pb.ListSubmissionsResponse(submissions=submissions, page=common_pb2.PageResponse(next_page_token=token))

    async def ListConsumers(self, request: pb.ListConsumersRequest, context: Context) -> pb.ListConsumersResponse:
        current_principal()
        entries = await self._d.directory.entries()
        return pb.ListConsumersResponse(
            consumers=[
                pb.Consumer(
                    name=e.name,
                    description=e.description,
                    enabled=e.enabled,
                    max_deliveries=e.max_deliveries,
                    required=e.required,
                    batch_size=e.batch_size,
                    backoff_ms=e.backoff_ms,
                )
                for e in entries
            ]
        )

    async def ConsumerStats(self, request: pb.ConsumerStatsRequest, context: Context) -> pb.ConsumerStatsResponse:
        current_principal()
        counters = await self._d.stats.read(request.consumer)
        response = pb.ConsumerStatsResponse()
        for c in counters:
            item = response.consumers.add(
                consumer=c.entry.name,
                pending=c.pending,
                ack_pending=c.ack_pending,
                redelivered=c.redelivered,
                delivered=c.delivered,
                dead_lettered=c.dead_lettered,
                processed_per_minute=c.processed_per_minute,
                oldest_unprocessed_age_ms=c.oldest_unprocessed_age_ms,
                required=c.entry.required,
            )
            if c.last_active_at is not None:
                item.last_active_at.FromDatetime(c.last_active_at)
        return response

    async def ListDeadLetters(self, request: pb.ListDeadLettersRequest, context: Context) -> pb.ListDeadLettersResponse:
        letters, token = await self._d.dead_letters.list(
            current_principal().user_id,
            request.consumer,
            request.form_id,
            request.page.page_size,
            request.page.page_token,
        )
        return pb.ListDeadLettersResponse(
            dead_letters=[_dead_letter_pb(d) for d in letters], page=common_pb2.PageResponse(next_page_token=token)
        )

    async def Redrive(self, request: pb.RedriveRequest, context: Context) -> pb.RedriveResponse:
        count = await self._d.dead_letters.redrive(
            current_principal().user_id, list(request.dead_letter_ids), request.all_for_consumer
        )
        return pb.RedriveResponse(redriven_count=count)
