"""What the forms tests share: field builders, values, error details."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from chatmesh.forms.v1 import forms_pb2 as fpb


def field(key: str, type_: int, *, required: bool = False, **limits: Any) -> fpb.Field:
    """A field whose label is its key."""
    multiple = bool(limits.pop("multiple", False))
    return fpb.Field(
        key=key, label=key.title(), type=type_, required=required, multiple=multiple, limits=fpb.FieldLimits(**limits)
    )


def text(value: str) -> fpb.FieldValue:
    """A string value."""
    return fpb.FieldValue(string_value=value)


def submit_request(form_id: str, key: str | None = None, **values: fpb.FieldValue) -> fpb.SubmitRequest:
    """A Submit request (a fresh idempotency key unless given)."""
    return fpb.SubmitRequest(form_id=form_id, idempotency_key=key or str(uuid.uuid4()), values=values)


def field_violations(err: grpc.aio.AioRpcError) -> dict[str, str]:
    """The google.rpc.BadRequest field violations in an error's status details."""
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                request = error_details_pb2.BadRequest()
                if detail.Unpack(request):
                    return {v.field: v.description for v in request.field_violations}
    return {}


def metadata_value(err: grpc.aio.AioRpcError, key: str) -> str:
    """One trailing metadata value of an error ("" if absent)."""
    for k, v in err.trailing_metadata() or ():
        if k == key:
            return str(v)
    return ""


CONTACT_FIELDS = [
    field("name", fpb.FIELD_TYPE_TEXT, required=True, max_length=100),
    field("email", fpb.FIELD_TYPE_EMAIL, required=True),
    field("message", fpb.FIELD_TYPE_LONG_TEXT),
    field("age", fpb.FIELD_TYPE_INTEGER, min_value=0, max_value=150),
    field("score", fpb.FIELD_TYPE_NUMBER, min_value=0, max_value=10),
    field("subscribe", fpb.FIELD_TYPE_BOOLEAN),
    field("size", fpb.FIELD_TYPE_CHOICE, choices=["S", "M", "L"]),
    field("visit", fpb.FIELD_TYPE_DATE),
    field("site", fpb.FIELD_TYPE_URL),
    field("code", fpb.FIELD_TYPE_TEXT, pattern="[A-Z]{3}-[0-9]{2}"),
]
"""A form with one field of every type."""


def good_contact(**over: fpb.FieldValue) -> dict[str, fpb.FieldValue]:
    """Values that pass CONTACT_FIELDS."""
    values = {
        "name": text("Ann Lee"),
        "email": text("ann@example.org"),
        "message": text("Hello\nthere"),
        "age": fpb.FieldValue(integer_value=34),
        "score": fpb.FieldValue(number_value=7.5),
        "subscribe": fpb.FieldValue(bool_value=True),
        "size": fpb.FieldValue(choices=fpb.ChoiceList(values=["M"])),
        "visit": text("2026-03-01"),
        "site": text("https://example.org/x"),
        "code": text("ABC-12"),
    }
    values.update(over)
    return values
