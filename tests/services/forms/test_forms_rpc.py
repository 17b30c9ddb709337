"""CreateForm, GetForm, ListForms and UpdateForm as a client sees them (real NATS and Cassandra)."""

from __future__ import annotations

import grpc
import pytest

from chatmesh.common.v1 import common_pb2
from chatmesh.forms.v1 import forms_pb2 as fpb
from tests.conftest_forms import FormsEnv
from tests.services.forms.helpers import CONTACT_FIELDS, field, field_violations, good_contact, submit_request, text


async def test_a_form_is_created_at_version_1_and_read_back_by_any_signed_in_user(forms_env: FormsEnv) -> None:
    owner, other = forms_env.user(), forms_env.user()
    form = await forms_env.form(owner, CONTACT_FIELDS)
    assert form.version == 1 and form.owner_user_id == owner.user_id and not form.public
    got = (await forms_env.stub.GetForm(fpb.GetFormRequest(form_id=form.form_id), metadata=other.auth)).form
    assert [f.key for f in got.fields] == [f.key for f in CONTACT_FIELDS]
    assert got.fields[9].limits.pattern == "[A-Z]{3}-[0-9]{2}"


async def test_a_bad_pattern_and_a_repeated_key_are_invalid_argument_naming_the_field(forms_env: FormsEnv) -> None:
    owner = forms_env.user()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await forms_env.form(owner, [field("a", fpb.FIELD_TYPE_TEXT), field("b", fpb.FIELD_TYPE_TEXT, pattern="(x")])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("fields[1].limits.pattern: ")
    assert "fields[1].limits.pattern" in field_violations(err.value)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await forms_env.form(owner, [field("a", fpb.FIELD_TYPE_TEXT), field("a", fpb.FIELD_TYPE_EMAIL)])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "fields" in (err.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as err:  # limits that do not go with the type
        await forms_env.form(owner, [field("n", fpb.FIELD_TYPE_NUMBER, max_length=3)])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_same_name_twice_is_already_exists_and_unknown_ids_are_not_found(forms_env: FormsEnv) -> None:
    owner = forms_env.user()
    await forms_env.form(owner, CONTACT_FIELDS, name="contact")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await forms_env.form(owner, CONTACT_FIELDS, name="contact")
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    await forms_env.form(forms_env.user(), CONTACT_FIELDS, name="contact")  # another owner may use the name
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await forms_env.stub.GetForm(
            fpb.GetFormRequest(form_id="00000000-0000-4000-8000-000000000000"), metadata=owner.auth
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_private_form_needs_a_token_and_a_public_one_does_not(forms_env: FormsEnv) -> None:
    owner = forms_env.user()
    private = await forms_env.form(owner, CONTACT_FIELDS)
    public = await forms_env.form(owner, CONTACT_FIELDS, public=True)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await forms_env.stub.GetForm(fpb.GetFormRequest(form_id=private.form_id))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    got = await forms_env.stub.GetForm(fpb.GetFormRequest(form_id=public.form_id))
    assert got.form.public
    with pytest.raises(grpc.aio.AioRpcError) as err:  # a token that is sent is checked, public or not
        await forms_env.stub.GetForm(
            fpb.GetFormRequest(form_id=public.form_id), metadata=(("authorization", "Bearer forged"),)
        )
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_list_forms_shows_only_the_callers_forms_newest_first_in_pages(forms_env: FormsEnv) -> None:
    owner, other = forms_env.user(), forms_env.user()
    made = [await forms_env.form(owner, CONTACT_FIELDS, name=f"form-{i}") for i in range(5)]
    await forms_env.form(other, CONTACT_FIELDS, name="theirs")
    seen, token = [], ""
    while True:
        page = await forms_env.stub.ListForms(
            fpb.ListFormsRequest(page=common_pb2.PageRequest(page_size=2, page_token=token)), metadata=owner.auth
        )
        seen += [f.name for f in page.forms]
        token = page.page.next_page_token
        if not token:
            break
    assert seen == [f.name for f in reversed(made)]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await forms_env.stub.ListForms(
            fpb.ListFormsRequest(page=common_pb2.PageRequest(page_token="bogus")), metadata=owner.auth
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("page.page_token")


async def test_update_makes_a_new_version_that_submissions_are_checked_against(forms_env: FormsEnv) -> None:
    owner, other = forms_env.user(), forms_env.user()
    form = await forms_env.form(owner, [field("name", fpb.FIELD_TYPE_TEXT, required=True)])
    first = await forms_env.stub.Submit(submit_request(form.form_id, name=text("Ann")), metadata=owner.auth)
    assert first.form_version == 1
    update = fpb.UpdateFormRequest(
        form_id=form.form_id,
        expected_version=1,
        title="Now with a city",
        fields=[field("name", fpb.FIELD_TYPE_TEXT, required=True), field("city", fpb.FIELD_TYPE_TEXT, required=True)],
        public=True,
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await forms_env.stub.UpdateForm(update, metadata=other.auth)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    updated = (await forms_env.stub.UpdateForm(update, metadata=owner.auth)).form
    assert updated.version == 2 and updated.public and updated.title == "Now with a city"
    with pytest.raises(grpc.aio.AioRpcError) as err:  # the old version is gone for writers
        await forms_env.stub.UpdateForm(update, metadata=owner.auth)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "version 2" in (err.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as err:  # the new required field applies at once
        await forms_env.stub.Submit(submit_request(form.form_id, name=text("Bo")), metadata=owner.auth)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and 'values["city"]' in (err.value.details() or "")
    second = await forms_env.stub.Submit(
        submit_request(form.form_id, name=text("Bo"), city=text("Oslo")), metadata=owner.auth
    )
    assert second.form_version == 2
    for reply, version in ((first, 1), (second, 2)):
        await forms_env.wait_processed(reply.submission_id)
        got = await forms_env.stub.GetSubmission(
            fpb.GetSubmissionRequest(submission_id=reply.submission_id), metadata=owner.auth
        )
        assert got.submission.form_version == version


async def test_every_field_type_is_stored_as_sanitised(forms_env: FormsEnv) -> None:
    owner = forms_env.user()
    form = await forms_env.form(owner, CONTACT_FIELDS)
    reply = await forms_env.stub.Submit(
        submit_request(form.form_id, **good_contact(email=text("  Ann@EXAMPLE.org "), message=text("a\r\nb\x00"))),
        metadata=owner.auth,
    )
    await forms_env.wait_processed(reply.submission_id)
    got = await forms_env.stub.GetSubmission(
        fpb.GetSubmissionRequest(submission_id=reply.submission_id), metadata=owner.auth
    )
    values = got.submission.values
    assert values["email"].string_value == "Ann@example.org"
    assert values["message"].string_value == "a\nb"
    assert values["age"].integer_value == 34 and values["score"].number_value == 7.5
    assert values["subscribe"].bool_value and list(values["size"].choices.values) == ["M"]
