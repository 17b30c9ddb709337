"""Form definitions: the rules of each FieldType, and the checks a definition must pass.

protovalidate (the contract's annotations) already rejects what one message can see
(keys, labels, which limits go with which type, repeated keys); what needs code is here:
patterns that must compile as RE2, and length limits no larger than the type's own.
No gRPC here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import re2

from chatmesh.forms.v1 import forms_pb2 as pb

#: Longest value of each text-like type, in characters (the contract's FieldType comments).
TYPE_MAX_LENGTH: dict[int, int] = {
    pb.FIELD_TYPE_TEXT: 1_000,
    pb.FIELD_TYPE_LONG_TEXT: 10_000,
    pb.FIELD_TYPE_EMAIL: 254,
    pb.FIELD_TYPE_URL: 2_048,
}
TEXT_TYPES = frozenset(TYPE_MAX_LENGTH)

#: RE2 programs larger than this are refused (a pattern of 256 characters can still blow up
#: when compiled: `(a{100}){100}`); RE2's default budget is 8 MiB of memory.
PATTERN_MAX_MEMORY = 1 << 20


@dataclass(frozen=True)
class FieldRules:
    """One field's rules, resolved: the limits that apply, with the type's defaults filled in."""

    key: str
    type: int
    required: bool
    multiple: bool
    min_length: int
    max_length: int
    min_value: float | None
    max_value: float | None
    pattern: str
    choices: tuple[str, ...]


def rules_of(field: pb.Field) -> FieldRules:
    """The resolved rules of a (valid) field."""
    limits = field.limits
    type_max = TYPE_MAX_LENGTH.get(field.type, 0)
    max_length = min(type_max, limits.max_length) if limits.HasField("max_length") else type_max
    return FieldRules(
        key=field.key,
        type=field.type,
        required=field.required,
        multiple=field.multiple,
        min_length=limits.min_length if limits.HasField("min_length") else 0,
        max_length=max_length,
        min_value=limits.min_value if limits.HasField("min_value") else None,
        max_value=limits.max_value if limits.HasField("max_value") else None,
        pattern=limits.pattern,
        choices=tuple(limits.choices),
    )


def compile_pattern(pattern: str) -> re2._Regexp[str]:
    """The RE2 program of ``pattern`` (raises re2.error if it is not valid RE2 or too large)."""
    options = re2.Options()
    options.max_mem = PATTERN_MAX_MEMORY
    options.log_errors = False
    return re2.compile(pattern, options)


def definition_violations(fields: Sequence[pb.Field]) -> list[tuple[str, str]]:
    """What is wrong with ``fields`` beyond the contract's annotations, as (field path, problem) pairs."""
    problems: list[tuple[str, str]] = []
    for index, field in enumerate(fields):
        path = f"fields[{index}].limits"
        limits = field.limits
        type_max = TYPE_MAX_LENGTH.get(field.type)
        if type_max is not None:
            if limits.HasField("max_length") and limits.max_length > type_max:
                problems.append((f"{path}.max_length", f"at most {type_max} for this field type"))
            if limits.HasField("min_length") and limits.min_length > type_max:
                problems.append((f"{path}.min_length", f"at most {type_max} for this field type"))
        if limits.pattern:
            try:
                compile_pattern(limits.pattern)
            except re2.error:
                problems.append((f"{path}.pattern", "not a valid RE2 regular expression (or too large)"))
        if field.type == pb.FIELD_TYPE_INTEGER:
            for name in ("min_value", "max_value"):
                if limits.HasField(name) and abs(getattr(limits, name)) > 2**63:
                    problems.append((f"{path}.{name}", "outside the range of a 64-bit integer"))
    return problems
