"""Submit: every violation at once, sizes, idempotency, tokens, per-user rate limits (real NATS and Cassandra)."""

from __future__ import annotations

import uuid

import grpc
import pytest

from chatmesh.forms.v1 import forms_pb2 as fpb
from tests.conftest_forms import FormsEnv
from tests.services.forms.helpers import (
    CONTACT_FIELDS,
    field,
    field_violations,
    good_contact,
    metadata_value,
    submit_request,
    text,
)


async def _refused(env: FormsEnv, request: fpb.SubmitRequest, metadata: object = ()) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env.stub.Submit(request, metadata=metadata)  # type: ignore[arg-type]
    return err.value


async def test_every_broken_value_is_reported_at_once_naming_each_key(forms_env: FormsEnv) -> None:
    owner = forms_env.user()
    form = await forms_env.form(owner, CONTACT_FIELDS)
    bad = {
        "email": text("not-an-email"),
        "message": fpb.FieldValue(integer_value=3),
        "age": fpb.FieldValue(integer_value=151),
        "score": fpb.FieldValue(number_value=10.5),
        "subscribe": text("yes"),
        "size": fpb.FieldValue(choices=fpb.ChoiceList(values=["XL"])),
        "visit": text("2026-02-30"),
        "site": text("ftp://example.org"),
        "code": text("abc-12"),
        "nmae": text("typo"),
    }
    err = await _refused(forms_env, submit_request(form.form_id, **bad), owner.auth)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(err)
    assert set(violations) == {f'values["{k}"]' for k in [*bad, "name"]}
    assert violations['values["name"]'] == "required"
    assert violations['values["nmae"]'] == "not a field of this form"
    assert "email address" in violations['values["email"]']
    assert "at most 150" in violations['values["age"]'] and "at most 10" in violations['values["score"]']
    assert "not a calendar date" in violations['values["visit"]']
    assert "pattern" in violations['values["code"]']
    first = (err.details() or "").split(":")[0]
    assert first in violations and "more" in (err.details() or "")


async def test_whitespace_only_required_text_is_missing_and_a_one_line_field_refuses_breaks(
    forms_env: FormsEnv,
) -> None:
    owner = forms_env.user()
    form = await forms_env.form(owner, CONTACT_FIELDS)
    err = await _refused(
        forms_env, submit_request(form.form_id, **good_contact(name=text(" \t\x00 "), code=text("AB\nC"))), owner.auth
    )
    assert field_violations(err) == {
        'values["name"]': "required",
        'values["code"]': "must be one line (no line breaks)",
    }


async def test_oversized_values_are_refused_by_the_value_and_by_the_whole(forms_env: FormsEnv) -> None:
    owner = forms_env.user()
    form = await forms_env.form(owner, CONTACT_FIELDS)
    err = await _refused(forms_env, submit_request(form.form_id, **good_contact(name=text("x" * 101))), owner.auth)
    assert "at most 100 characters" in field_violations(err)['values["name"]']
    err = await _refused(
        forms_env, submit_request(form.form_id, **good_contact(message=text("x" * 10_001))), owner.auth
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT  # the contract's own limit: protovalidate
    assert (err.details() or "").startswith('values["message"]')
    many = [field(f"t{i}", fpb.FIELD_TYPE_LONG_TEXT) for i in range(10)]
    big_form = await forms_env.form(owner, many)
    err = await _refused(
        forms_env, submit_request(big_form.form_id, **{f"t{i}": text("é" * 9000) for i in range(10)}), owner.auth
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.details() or "").startswith("values: the submission is ")


async def test_a_retry_with_the_same_key_answers_the_first_submission_and_stores_it_once(forms_env: FormsEnv) -> None:
    owner, other = forms_env.user(), forms_env.user()
    form = await forms_env.form(owner, CONTACT_FIELDS)
    key = str(uuid.uuid4())
    first = await forms_env.stub.Submit(submit_request(form.form_id, key, **good_contact()), metadata=owner.auth)
    again = await forms_env.stub.Submit(submit_request(form.form_id, key, **good_contact()), metadata=owner.auth)
    assert not first.duplicate and again.duplicate
    assert again.submission_id == first.submission_id and again.created_at == first.created_at
    theirs = await forms_env.stub.Submit(submit_request(form.form_id, key, **good_contact()), metadata=other.auth)
    assert not theirs.duplicate and theirs.submission_id != first.submission_id  # the key is per caller
    await forms_env.wait_processed(theirs.submission_id)
    await forms_env.wait_processed(first.submission_id)
    page = await forms_env.stub.ListSubmissions(fpb.ListSubmissionsRequest(form_id=form.form_id), metadata=owner.auth)
    assert sorted(s.submission_id for s in page.submissions) == sorted([first.submission_id, theirs.submission_id])


async def test_unknown_forms_are_not_found_and_private_ones_need_a_token(forms_env: FormsEnv) -> None:
    owner = forms_env.user()
    err = await _refused(forms_env, submit_request(str(uuid.uuid4()), name=text("x")), owner.auth)
    assert err.code() == grpc.StatusCode.NOT_FOUND
    private = await forms_env.form(owner, CONTACT_FIELDS)
    err = await _refused(forms_env, submit_request(private.form_id, **good_contact()))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    public = await forms_env.form(owner, CONTACT_FIELDS, public=True)
    err = await _refused(forms_env, submit_request(public.form_id, **good_contact()), (("authorization", "Bearer x"),))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED  # a bad token is never taken as anonymous
    anonymous = await forms_env.stub.Submit(submit_request(public.form_id, **good_contact()))
    status = await forms_env.wait_processed(anonymous.submission_id)
    assert status.processed
    got = await forms_env.stub.GetSubmission(fpb.GetSubmissionRequest(submission_id=anonymous.submission_id))
    assert got.status.processed and not got.HasField("submission")  # the status by id; no values without a token
    mine = await forms_env.stub.GetSubmission(
        fpb.GetSubmissionRequest(submission_id=anonymous.submission_id), metadata=owner.auth
    )
    assert mine.submission.submitter_user_id == "" and mine.submission.values["name"].string_value == "Ann Lee"


async def test_only_the_owner_reads_a_forms_submissions(forms_env: FormsEnv) -> None:
    owner, submitter, stranger = forms_env.user(), forms_env.user(), forms_env.user()
    form = await forms_env.form(owner, CONTACT_FIELDS)
    reply = await forms_env.stub.Submit(submit_request(form.form_id, **good_contact()), metadata=submitter.auth)
    await forms_env.wait_processed(reply.submission_id)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await forms_env.stub.ListSubmissions(fpb.ListSubmissionsRequest(form_id=form.form_id), metadata=stranger.auth)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    request = fpb.GetSubmissionRequest(submission_id=reply.submission_id)
    assert not (await forms_env.stub.GetSubmission(request, metadata=stranger.auth)).HasField("submission")
    assert (await forms_env.stub.GetSubmission(request, metadata=submitter.auth)).submission.values["name"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await forms_env.stub.GetSubmission(fpb.GetSubmissionRequest(submission_id=str(uuid.uuid4())))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_one_user_submitting_too_fast_is_rate_limited_and_others_are_not(forms_env: FormsEnv) -> None:
    owner = forms_env.user()
    form = await forms_env.form(owner, [field("n", fpb.FIELD_TYPE_INTEGER)])
    flooder, calm = forms_env.user(), forms_env.user()
    burst = forms_env.settings.submit_burst
    refused = None
    for i in range(burst + 20):
        try:
            await forms_env.stub.Submit(
                submit_request(form.form_id, n=fpb.FieldValue(integer_value=i)), metadata=flooder.auth
            )
        except grpc.aio.AioRpcError as err:
            refused = (i, err)
            break
    assert refused is not None, "a flood must be limited"
    index, err = refused
    assert index >= burst - 1 and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert 0 < int(metadata_value(err, "retry-after-ms")) <= 1000
    reply = await forms_env.stub.Submit(
        submit_request(form.form_id, n=fpb.FieldValue(integer_value=1)), metadata=calm.auth
    )
    assert reply.submission_id
