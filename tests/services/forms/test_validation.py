"""Every FieldType rule, sanitising and the definition checks, as pure logic (no servers)."""

from __future__ import annotations

from typing import Any

import pytest

from chatmesh.forms.v1 import forms_pb2 as pb
from services.forms.schema import definition_violations
from services.forms.validation import clean_text, compile_form, normalise_email, valid_url


def field(key: str, type_: int, *, required: bool = False, multiple: bool = False, **limits: Any) -> pb.Field:
    return pb.Field(
        key=key, label=key, type=type_, required=required, multiple=multiple, limits=pb.FieldLimits(**limits)
    )


def s(text: str) -> pb.FieldValue:
    return pb.FieldValue(string_value=text)


def check(fields: list[pb.Field], values: dict[str, pb.FieldValue]) -> tuple[dict[str, Any], dict[str, str]]:
    form = compile_form("f", 1, fields)
    out = pb.Submission()
    violations = form.check(values, out.values)
    clean = {k: getattr(v, v.WhichOneof("kind")) for k, v in out.values.items()}
    clean = {k: list(v.values) if isinstance(v, pb.ChoiceList) else v for k, v in clean.items()}
    return clean, dict(violations)


def test_text_is_trimmed_line_ends_normalised_and_control_characters_removed() -> None:
    assert clean_text("  a\r\nb\rc\u2028d\x00e\x1b\tf\x7f  ") == "a\nb\nc\nde\tf"
    clean, problems = check([field("bio", pb.FIELD_TYPE_LONG_TEXT)], {"bio": s(" x\r\ny\x07 ")})
    assert clean == {"bio": "x\ny"} and not problems


def test_empty_text_after_sanitising_counts_as_missing() -> None:
    fields = [field("name", pb.FIELD_TYPE_TEXT, required=True), field("note", pb.FIELD_TYPE_TEXT)]
    clean, problems = check(fields, {"name": s(" \x00 \t"), "note": s("   ")})
    assert clean == {}
    assert problems == {'values["name"]': "required"}


def test_one_line_text_refuses_line_breaks_and_long_text_takes_them() -> None:
    _, problems = check([field("t", pb.FIELD_TYPE_TEXT)], {"t": s("a\nb")})
    assert "one line" in problems['values["t"]']
    clean, problems = check([field("t", pb.FIELD_TYPE_LONG_TEXT)], {"t": s("a\nb")})
    assert clean == {"t": "a\nb"} and not problems


def test_text_lengths_default_to_the_types_maximum_and_limits_narrow_them() -> None:
    _, problems = check([field("t", pb.FIELD_TYPE_TEXT)], {"t": s("x" * 1001)})
    assert "at most 1000 characters" in problems['values["t"]']
    clean, _ = check([field("t", pb.FIELD_TYPE_TEXT)], {"t": s("é" * 1000)})
    assert clean["t"] == "é" * 1000  # characters, not bytes
    _, problems = check([field("t", pb.FIELD_TYPE_LONG_TEXT)], {"t": s("x" * 10_001)})
    assert "at most 10000" in problems['values["t"]']
    fields = [field("t", pb.FIELD_TYPE_TEXT, min_length=3, max_length=5)]
    assert "at least 3" in check(fields, {"t": s("ab")})[1]['values["t"]']
    assert "at most 5" in check(fields, {"t": s("abcdef")})[1]['values["t"]']
    assert check(fields, {"t": s(" abc ")})[0] == {"t": "abc"}


def test_patterns_are_re2_and_must_match_the_whole_value() -> None:
    fields = [field("code", pb.FIELD_TYPE_TEXT, pattern="[A-Z]{2}[0-9]{3}")]
    assert check(fields, {"code": s("AB123")})[0] == {"code": "AB123"}
    for bad in ("AB1234", "xAB123", "ab123"):
        assert "pattern" in check(fields, {"code": s(bad)})[1]['values["code"]'], bad


def test_email_addresses_are_checked_and_their_domain_lowercased() -> None:
    assert normalise_email("Ann.Lee+x@Example.COM") == "Ann.Lee+x@example.com"
    for bad in ("ann", "ann@", "@x.com", "ann@localhost", "a b@x.com", "ann@x..com", "ann@-x.com", "a..b@x.com"):
        assert normalise_email(bad) is None, bad
    fields = [field("email", pb.FIELD_TYPE_EMAIL)]
    assert check(fields, {"email": s(" Ann@Example.ORG ")})[0] == {"email": "Ann@example.org"}
    assert check(fields, {"email": s("not-an-email")})[1] == {'values["email"]': "not an email address"}
    long_address = "a" * 60 + "@" + ".".join(["b" * 60] * 3) + ".com"  # 249 characters: fine
    assert check(fields, {"email": s(long_address)})[0]
    too_long = "a" * 60 + "@" + ".".join(["b" * 60] * 4) + ".com"
    assert "at most 254" in check(fields, {"email": s(too_long)})[1]['values["email"]']


def test_numbers_take_floats_or_integers_and_must_be_finite_and_in_range() -> None:
    fields = [field("n", pb.FIELD_TYPE_NUMBER, min_value=-1.5, max_value=10)]
    assert check(fields, {"n": pb.FieldValue(number_value=2.5)})[0] == {"n": 2.5}
    assert check(fields, {"n": pb.FieldValue(integer_value=3)})[0] == {"n": 3.0}
    assert "at least -1.5" in check(fields, {"n": pb.FieldValue(number_value=-2)})[1]['values["n"]']
    assert "at most 10" in check(fields, {"n": pb.FieldValue(integer_value=11)})[1]['values["n"]']
    assert "finite" in check(fields, {"n": pb.FieldValue(number_value=float("nan"))})[1]['values["n"]']
    assert "takes number_value" in check(fields, {"n": s("3")})[1]['values["n"]']


def test_integers_take_only_integer_values_in_range() -> None:
    fields = [field("age", pb.FIELD_TYPE_INTEGER, min_value=0, max_value=150)]
    assert check(fields, {"age": pb.FieldValue(integer_value=42)})[0] == {"age": 42}
    assert "takes integer_value" in check(fields, {"age": pb.FieldValue(number_value=4.0)})[1]['values["age"]']
    assert "at most 150" in check(fields, {"age": pb.FieldValue(integer_value=151)})[1]['values["age"]']
    assert "at least 0" in check(fields, {"age": pb.FieldValue(integer_value=-1)})[1]['values["age"]']


def test_a_required_boolean_takes_either_value() -> None:
    fields = [field("ok", pb.FIELD_TYPE_BOOLEAN, required=True)]
    assert check(fields, {"ok": pb.FieldValue(bool_value=False)}) == ({"ok": False}, {})
    assert check(fields, {}) == ({}, {'values["ok"]': "required"})
    assert "takes bool_value" in check(fields, {"ok": s("yes")})[1]['values["ok"]']


def test_choices_must_be_among_the_fields_choices_one_unless_multiple() -> None:
    single = [field("size", pb.FIELD_TYPE_CHOICE, choices=["S", "M", "L"])]
    multi = [field("tags", pb.FIELD_TYPE_CHOICE, multiple=True, choices=["a", "b", "c"])]
    assert check(single, {"size": pb.FieldValue(choices=pb.ChoiceList(values=["M"]))})[0] == {"size": ["M"]}
    assert (
        "exactly one"
        in check(single, {"size": pb.FieldValue(choices=pb.ChoiceList(values=["S", "M"]))})[1]['values["size"]']
    )
    assert (
        "not one of"
        in check(single, {"size": pb.FieldValue(choices=pb.ChoiceList(values=["XL"]))})[1]['values["size"]']
    )
    clean, _ = check(multi, {"tags": pb.FieldValue(choices=pb.ChoiceList(values=["c", "a"]))})
    assert clean == {"tags": ["a", "c"]}  # in the form's order
    assert "takes choices" in check(single, {"size": s("M")})[1]['values["size"]']


def test_dates_are_real_calendar_days_written_yyyy_mm_dd() -> None:
    fields = [field("d", pb.FIELD_TYPE_DATE)]
    assert check(fields, {"d": s("2024-02-29")})[0] == {"d": "2024-02-29"}
    assert "not a calendar date" in check(fields, {"d": s("2023-02-29")})[1]['values["d"]']
    for bad in ("2024-2-9", "29/02/2024", "2024-02-29T00:00", "20240229"):
        assert "YYYY-MM-DD" in check(fields, {"d": s(bad)})[1]['values["d"]'], bad


def test_urls_are_absolute_http_or_https_and_at_most_2048_characters() -> None:
    assert valid_url("https://example.com/a?b=c#d") and valid_url("HTTP://x.org")
    for bad in ("ftp://x.org", "example.com", "/path", "https://", "http://x.org:99999", "https://a b.com"):
        assert not valid_url(bad), bad
    fields = [field("u", pb.FIELD_TYPE_URL)]
    assert "absolute http" in check(fields, {"u": s("javascript:alert(1)")})[1]['values["u"]']
    assert "at most 2048" in check(fields, {"u": s("https://x.org/" + "a" * 2040)})[1]['values["u"]']


def test_every_violation_is_reported_at_once_with_unknown_keys_and_missing_fields() -> None:
    fields = [
        field("name", pb.FIELD_TYPE_TEXT, required=True),
        field("email", pb.FIELD_TYPE_EMAIL, required=True),
        field("age", pb.FIELD_TYPE_INTEGER, max_value=150),
    ]
    _, problems = check(fields, {"nmae": s("Ann"), "email": s("nope"), "age": pb.FieldValue(integer_value=200)})
    assert problems == {
        'values["nmae"]': "not a field of this form",
        'values["email"]': "not an email address",
        'values["age"]': "at most 150",
        'values["name"]': "required",
    }


@pytest.mark.parametrize(
    ("limits", "type_", "path", "problem"),
    [
        ({"pattern": "(unclosed"}, pb.FIELD_TYPE_TEXT, "fields[0].limits.pattern", "RE2"),
        ({"pattern": "a(?=b)"}, pb.FIELD_TYPE_TEXT, "fields[0].limits.pattern", "RE2"),  # look-ahead: not RE2
        ({"max_length": 300}, pb.FIELD_TYPE_EMAIL, "fields[0].limits.max_length", "at most 254"),
        ({"min_length": 2000}, pb.FIELD_TYPE_TEXT, "fields[0].limits.min_length", "at most 1000"),
    ],
)
def test_definitions_with_bad_patterns_or_lengths_past_the_type_are_refused(
    limits: dict[str, Any], type_: int, path: str, problem: str
) -> None:
    violations = dict(definition_violations([field("x", type_, **limits)]))
    assert problem in violations[path]


def test_a_good_definition_has_no_violations() -> None:
    fields = [
        field("code", pb.FIELD_TYPE_TEXT, pattern="[a-z]+", max_length=20),
        field("n", pb.FIELD_TYPE_NUMBER, min_value=0),
    ]
    assert definition_violations(fields) == []


def test_violations_come_in_the_forms_field_order_whatever_order_the_values_came_in() -> None:
    fields = [
        field("name", pb.FIELD_TYPE_TEXT, required=True),
        field("email", pb.FIELD_TYPE_EMAIL),
        field("age", pb.FIELD_TYPE_INTEGER, required=True),
    ]
    form = compile_form("f", 1, fields)
    out = pb.Submission()
    values = {"nickname": s("x"), "age": s("old"), "email": s("not an address")}
    violations = form.check(values, out.values)
    assert [path for path, _ in violations] == [
        'values["name"]',
        'values["email"]',
        'values["age"]',
        'values["nickname"]',
    ]
