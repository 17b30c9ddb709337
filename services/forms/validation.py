"""Checking and sanitising submitted values against a form version, compiled once per version.

:func:`compile_form` turns a form's fields into one checker per field (patterns compiled,
limits resolved), so a Submit pays only for the checks themselves. Every violation is
collected (the caller sees them all at once), each named ``values["key"]``. No gRPC here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlsplit

from chatmesh.forms.v1 import forms_pb2 as pb
from services.forms.schema import TEXT_TYPES, FieldRules, compile_pattern, rules_of

# C0 and C1 controls but "\t" and "\n" (line ends are normalised to "\n" first).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_LINE_ENDS = re.compile("\r\n|[\r\x85\u2028\u2029]")
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_DOMAIN_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_INT64 = 2**63

MISSING = "required"
"""The problem of a required field without a value."""


def clean_text(value: str) -> str:
    """Trim surrounding whitespace, make every line end "\\n", drop control characters but "\\n" and "\\t"."""
    if _LINE_ENDS.search(value):
        value = _LINE_ENDS.sub("\n", value)
    if _CONTROL.search(value):
        value = _CONTROL.sub("", value)
    return value.strip()


def normalise_email(value: str) -> str | None:
    """The address with its domain lowercased, or None if it is not an email address."""
    local, at, domain = value.rpartition("@")
    if not at or not local or len(local) > 64 or not _EMAIL_LOCAL.fullmatch(local):
        return None
    labels = domain.split(".")
    if len(labels) < 2 or not all(_DOMAIN_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        return None
    return f"{local}@{domain.lower()}"


def valid_url(value: str) -> bool:
    """Whether ``value`` is an absolute http(s) URL with a host."""
    if any(c.isspace() for c in value):
        return False
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError on a bad port
    except ValueError:
        return False
    del port
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


# A checker reads the given value and writes the sanitised one into ``out``; it answers the
# problem, MISSING when there is nothing left (empty text), or None when all is well.
Checker = Callable[[pb.FieldValue, pb.FieldValue], str | None]

_KIND_NAMES: dict[int, str] = {
    pb.FIELD_TYPE_TEXT: "string_value",
    pb.FIELD_TYPE_LONG_TEXT: "string_value",
    pb.FIELD_TYPE_EMAIL: "string_value",
    pb.FIELD_TYPE_DATE: "string_value",
    pb.FIELD_TYPE_URL: "string_value",
    pb.FIELD_TYPE_NUMBER: "number_value or integer_value",
    pb.FIELD_TYPE_INTEGER: "integer_value",
    pb.FIELD_TYPE_BOOLEAN: "bool_value",
    pb.FIELD_TYPE_CHOICE: "choices",
}


def _wrong_kind(rules: FieldRules) -> str:
    return f"a {pb.FieldType.Name(rules.type).removeprefix('FIELD_TYPE_')} field takes {_KIND_NAMES[rules.type]}"


def _text_checker(rules: FieldRules) -> Checker:
    pattern = compile_pattern(rules.pattern) if rules.pattern else None
    wrong = _wrong_kind(rules)
    one_line = rules.type == pb.FIELD_TYPE_TEXT
    kind = rules.type
    min_length, max_length = rules.min_length, rules.max_length

    def check(value: pb.FieldValue, out: pb.FieldValue) -> str | None:
        if value.WhichOneof("kind") != "string_value":
            return wrong
        text = clean_text(value.string_value)
        if not text:
            return MISSING
        if one_line and "\n" in text:
            return "must be one line (no line breaks)"
        if kind == pb.FIELD_TYPE_EMAIL:
            email = normalise_email(text)
            if email is None:
                return "not an email address"
            text = email
        elif kind == pb.FIELD_TYPE_URL and not valid_url(text):
            return "not an absolute http or https URL"
        if len(text) > max_length:
            return f"at most {max_length} characters (got {len(text)})"
        if len(text) < min_length:
            return f"at least {min_length} characters (got {len(text)})"
        if pattern is not None and pattern.fullmatch(text) is None:
            return "does not match the field's pattern"
        out.string_value = text
        return None

    return check


def _range_problem(number: float, rules: FieldRules) -> str | None:
    if rules.min_value is not None and number < rules.min_value:
        return f"at least {rules.min_value:g}"
    if rules.max_value is not None and number > rules.max_value:
        return f"at most {rules.max_value:g}"
    return None


def _number_checker(rules: FieldRules) -> Checker:
    wrong = _wrong_kind(rules)

    def check(value: pb.FieldValue, out: pb.FieldValue) -> str | None:
        kind = value.WhichOneof("kind")
        if kind == "number_value":
            number = value.number_value
            if not math.isfinite(number):
                return "must be a finite number"
        elif kind == "integer_value":
            number = float(value.integer_value)
        else:
            return wrong
        problem = _range_problem(number, rules)
        if problem is None:
            out.number_value = number
        return problem

    return check


def _integer_checker(rules: FieldRules) -> Checker:
    wrong = _wrong_kind(rules)

    def check(value: pb.FieldValue, out: pb.FieldValue) -> str | None:
        if value.WhichOneof("kind") != "integer_value":
            return wrong
        integer = value.integer_value
        problem = _range_problem(float(integer), rules)
        if problem is None:
            out.integer_value = integer
        return problem

    return check


def _boolean_checker(rules: FieldRules) -> Checker:
    wrong = _wrong_kind(rules)

    def check(value: pb.FieldValue, out: pb.FieldValue) -> str | None:
        if value.WhichOneof("kind") != "bool_value":
            return wrong
        out.bool_value = value.bool_value
        return None

    return check


def _choice_checker(rules: FieldRules) -> Checker:
    wrong = _wrong_kind(rules)
    allowed = frozenset(rules.choices)
    order = {choice: index for index, choice in enumerate(rules.choices)}
    multiple = rules.multiple

    def check(value: pb.FieldValue, out: pb.FieldValue) -> str | None:
        if value.WhichOneof("kind") != "choices":
            return wrong
        picked = list(value.choices.values)
        if not picked:
            return MISSING
        unknown = [choice for choice in picked if choice not in allowed]
        if unknown:
            return f"not one of the field's choices: {unknown[0][:64]!r}"
        if len(set(picked)) != len(picked):
            return "a choice is picked twice"
        if not multiple and len(picked) != 1:
            return "exactly one choice (the field is not multiple)"
        out.choices.values.extend(sorted(picked, key=order.__getitem__))  # in the form's order
        return None

    return check


def _date_checker(rules: FieldRules) -> Checker:
    wrong = _wrong_kind(rules)

    def check(value: pb.FieldValue, out: pb.FieldValue) -> str | None:
        if value.WhichOneof("kind") != "string_value":
            return wrong
        text = clean_text(value.string_value)
        if not text:
            return MISSING
        if not _DATE.fullmatch(text):
            return 'a date as "YYYY-MM-DD"'
        try:
            date.fromisoformat(text)
        except ValueError:
            return "not a calendar date"
        out.string_value = text
        return None

    return check


def checker_of(rules: FieldRules) -> Checker:
    """The checker of one field's rules."""
    if rules.type in TEXT_TYPES:
        return _text_checker(rules)
    builders: dict[int, Callable[[FieldRules], Checker]] = {
        pb.FIELD_TYPE_NUMBER: _number_checker,
        pb.FIELD_TYPE_INTEGER: _integer_checker,
        pb.FIELD_TYPE_BOOLEAN: _boolean_checker,
        pb.FIELD_TYPE_CHOICE: _choice_checker,
        pb.FIELD_TYPE_DATE: _date_checker,
    }
    return builders[rules.type](rules)


def value_path(key: str) -> str:
    """How a violation names a submitted value."""
    return f'values["{key}"]'


@dataclass(frozen=True)
class CompiledForm:
    """One version of a form, ready to check submissions."""

    form_id: str
    version: int
    checkers: Mapping[str, Checker]
    required: tuple[str, ...]

    def check(
        self, values: Mapping[str, pb.FieldValue], out: MutableMapping[str, pb.FieldValue]
    ) -> list[tuple[str, str]]:
        """Write the sanitised ``values`` into ``out`` (a proto map); return every violation (none: valid).

        Violations come in the form's field order, so the error message names the first broken field.

        A value whose text is empty after sanitising is left out (as if not given).
        """
        violations: list[tuple[str, str]] = []
        checkers = self.checkers
        for key, value in values.items():
            checker = checkers.get(key)
            if checker is None:
                violations.append((value_path(key), "not a field of this form"))
                continue
            problem = checker(value, out[key])
            if problem is None:
                continue
            del out[key]
            if problem is not MISSING:
                violations.append((value_path(key), problem))
        for key in self.required:
            if key not in out and not any(path == value_path(key) for path, _ in violations):
                violations.append((value_path(key), MISSING))
        if len(violations) > 1:  # in the form's field order (a map's order is the client's), unknown keys last
            order = {value_path(k): i for i, k in enumerate(checkers)}
            violations.sort(key=lambda v: order.get(v[0], len(order)))
        return violations


def compile_form(form_id: str, version: int, fields: Sequence[pb.Field]) -> CompiledForm:
    """Compile ``fields`` (a valid definition) into a checker of submissions."""
    checkers: dict[str, Checker] = {}
    required: list[str] = []
    for field in fields:
        rules = rules_of(field)
        checkers[field.key] = checker_of(rules)
        if field.required:
            required.append(field.key)
    return CompiledForm(form_id, version, checkers, tuple(required))
