"""Form values from plain Python, and the field errors of a refused Submit.

``submit_form(form_id, {"name": "Ann", "guests": 3, "day": date(2027, 1, 5), "diet": ["vegan"]})``
turns each value into the contract's ``FieldValue`` by its Python type:

=====================  ==================  =========================================
Python                 FieldValue          field types
=====================  ==================  =========================================
``str``                ``string_value``    TEXT, LONG_TEXT, EMAIL, DATE, URL
``bool``               ``bool_value``      BOOLEAN
``int``                ``integer_value``   INTEGER, NUMBER
``float``              ``number_value``    NUMBER
``datetime.date``      ``string_value``    DATE (``YYYY-MM-DD``)
list, tuple or set     ``choices``         CHOICE (one, or several when ``multiple``)
of ``str``
``FieldValue``         itself
=====================  ==================  =========================================

The server checks every value against its field and answers INVALID_ARGUMENT naming the
first broken one (``values["email"]: ...``), with every broken value in the status
details: :func:`field_errors` reads them back as ``{"email": "not an email address", ...}``.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TypeAlias

import grpc
from google.rpc import error_details_pb2, status_pb2

from chatmesh.forms.v1 import forms_pb2 as pb

#: A value ``submit_form`` takes for one field.
FieldValueLike: TypeAlias = str | bool | int | float | datetime.date | list[str] | tuple[str, ...] | set[str]


def field_value(value: FieldValueLike | pb.FieldValue) -> pb.FieldValue:
    """The contract's FieldValue for a Python value (see the module's table).

    Raises:
        TypeError: A value of no field type.
    """
    if isinstance(value, pb.FieldValue):
        return value
    if isinstance(value, bool):
        return pb.FieldValue(bool_value=value)
    if isinstance(value, int):
        return pb.FieldValue(integer_value=value)
    if isinstance(value, float):
        return pb.FieldValue(number_value=value)
    if isinstance(value, str):
        return pb.FieldValue(string_value=value)
    if isinstance(value, datetime.datetime):
        raise TypeError("a DATE field takes a datetime.date (or 'YYYY-MM-DD'), not a datetime")
    if isinstance(value, datetime.date):
        return pb.FieldValue(string_value=value.isoformat())
    if isinstance(value, list | tuple | set) and all(isinstance(v, str) for v in value):
        picked = sorted(value) if isinstance(value, set) else list(value)
        return pb.FieldValue(choices=pb.ChoiceList(values=picked))
    raise TypeError(f"no form field takes a {type(value).__name__}")


def field_values(values: Mapping[str, FieldValueLike | pb.FieldValue]) -> dict[str, pb.FieldValue]:
    """Every value of a submission as a FieldValue, by field key.

    Raises:
        TypeError: A value of no field type (naming its key).
    """
    out = {}
    for key, value in values.items():
        try:
            out[key] = field_value(value)
        except TypeError as error:
            raise TypeError(f'values["{key}"]: {error}') from None
    return out


def field_errors(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """The broken fields of an INVALID_ARGUMENT, by field (``{'values["email"]': "not an email address"}``).

    Read from the google.rpc.BadRequest in the status details, which lists every broken
    field; a status without them gives the one field its message names (``field: problem``),
    or nothing.
    """
    if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
        return {}
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            found: dict[str, str] = {}
            for detail in status.details:
                bad = error_details_pb2.BadRequest()
                if detail.Unpack(bad):
                    for violation in bad.field_violations:
                        found.setdefault(violation.field, violation.description)
            if found:
                return found
    details = error.details() or ""
    name, sep, problem = details.partition(": ")
    return {name: problem} if sep and name and " " not in name else {}
