"""Temporary smoke test while building."""

from __future__ import annotations

import uuid

from chatmesh.forms.v1 import forms_pb2 as fpb
from tests.conftest_forms import FormsEnv


async def test_smoke(forms_env: FormsEnv) -> None:
    owner = forms_env.user()
    form = await forms_env.form(
        owner,
        [
            fpb.Field(key="name", label="Name", type=fpb.FIELD_TYPE_TEXT, required=True),
            fpb.Field(key="age", label="Age", type=fpb.FIELD_TYPE_INTEGER),
        ],
    )
    reply = await forms_env.stub.Submit(
        fpb.SubmitRequest(
            form_id=form.form_id,
            idempotency_key=str(uuid.uuid4()),
            values={"name": fpb.FieldValue(string_value=" Ann "), "age": fpb.FieldValue(integer_value=30)},
        ),
        metadata=owner.auth,
    )
    status = await forms_env.wait_processed(reply.submission_id)
    print(status)
    page = await forms_env.stub.ListSubmissions(fpb.ListSubmissionsRequest(form_id=form.form_id), metadata=owner.auth)
    print(page)
    assert page.submissions[0].values["name"].string_value == "Ann"
