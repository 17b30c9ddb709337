"""Requests built from the message descriptors: hypothesis strategies, a plausible seed, byte mutations.

Nothing here knows a service: every RPC of every contract is fuzzed from its input
descriptor, so a new RPC is fuzzed the day it is added.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

from mesh.contracts import load_all

T = FieldDescriptor
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)
_RANGES = {
    T.TYPE_INT32: INT32, T.TYPE_SINT32: INT32, T.TYPE_SFIXED32: INT32,
    T.TYPE_INT64: INT64, T.TYPE_SINT64: INT64, T.TYPE_SFIXED64: INT64,
    T.TYPE_UINT32: UINT32, T.TYPE_FIXED32: UINT32,
    T.TYPE_UINT64: UINT64, T.TYPE_FIXED64: UINT64,
}  # fmt: skip
MAX_DEPTH = 3


@dataclass(frozen=True)
class Rpc:
    """One RPC of a contract, as the fuzzer calls it."""

    service: str
    """Short service name ("session")."""
    path: str
    """"/pkg.Service/Method"."""
    method: MethodDescriptor
    request: type[Message]
    public: bool
    internal: bool

    @property
    def client_streaming(self) -> bool:
        """The request is a stream."""
        return bool(self.method.client_streaming)

    @property
    def server_streaming(self) -> bool:
        """The response is a stream."""
        return bool(self.method.server_streaming)

    def __str__(self) -> str:
        return self.path


def all_rpcs() -> list[Rpc]:
    """Every RPC of every service (mesh.contracts.load_all), in contract order."""
    import importlib

    rpcs = []
    for contract in load_all():
        module = importlib.import_module(f"chatmesh.{contract.name}.v1.{contract.name}_pb2")
        service = module.DESCRIPTOR.services_by_name[contract.full_name.rsplit(".", 1)[1]]
        for method in service.methods:
            path = f"/{service.full_name}/{method.name}"
            rpcs.append(
                Rpc(
                    contract.name, path, method, GetMessageClass(method.input_type),
                    path in contract.public, path in contract.internal,
                )
            )  # fmt: skip
    return rpcs


# -- hypothesis strategies -------------------------------------------------------------

#: Text a user might not expect: controls, combining marks, RTL, emoji, noncharacters, NUL.
ODD_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "\u202e\u0644\u0627",
        "e\u0301\u0301\u0301",
        "\U0001f600" * 3,
        "\ufffe\uffff",
        "\u0660\u0661\u0662",
        "１２３",
        "Ⅻ",
        "0" * 300,
        "a" * 5000,
        "../../etc/passwd",
        "%00",
        "' OR 1=1 --",
        "\n\r\t",
        "NaN",
        "-1",
        "00000000-0000-0000-0000-000000000000",
    ]
)
TEXT = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=40),
    ODD_TEXT,
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
)


def _scalar(field: FieldDescriptor, known: Sequence[str]) -> st.SearchStrategy[object]:
    kind = field.type
    if kind in _RANGES:
        low, high = _RANGES[kind]
        return st.one_of(st.sampled_from([low, high, 0, -1 if low < 0 else 1, 1]), st.integers(low, high))
    if kind in (T.TYPE_DOUBLE, T.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=64 if kind == T.TYPE_DOUBLE else 32)
    if kind == T.TYPE_BOOL:
        return st.booleans()
    if kind == T.TYPE_STRING:
        return st.one_of(TEXT, st.sampled_from(known)) if known else TEXT
    if kind == T.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == T.TYPE_ENUM:
        values = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(values), st.integers(*INT32))  # proto3 enums are open
    raise AssertionError(f"unhandled field type {kind}")


def message_strategy(descriptor: Descriptor, known: Sequence[str] = (), depth: int = 0) -> st.SearchStrategy[bytes]:
    """Serialized messages of ``descriptor`` with random field values (oneofs: at most one member)."""
    cls = GetMessageClass(descriptor)

    @st.composite
    def build(draw: Callable[..., object]) -> bytes:
        message = cls()
        _fill(draw, message, descriptor, known, depth)
        return message.SerializeToString()

    return build()


def _fill(
    draw: Callable[..., object], message: Message, descriptor: Descriptor, known: Sequence[str], depth: int
) -> None:
    chosen_oneofs = {o.name: draw(st.sampled_from([None, *o.fields])) for o in descriptor.oneofs}
    for field in descriptor.fields:
        oneof = field.containing_oneof
        if oneof is not None and chosen_oneofs.get(oneof.name) is not field:
            continue
        if oneof is None and not draw(st.booleans()):
            continue  # unset
        is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
        if is_map:
            key_field, value_field = (
                field.message_type.fields_by_name["key"],
                field.message_type.fields_by_name["value"],
            )
            for _ in range(int(draw(st.integers(0, 3)))):  # type: ignore[call-overload]
                key = draw(_scalar(key_field, known))
                target = getattr(message, field.name)
                if value_field.type == T.TYPE_MESSAGE:
                    if depth < MAX_DEPTH:
                        _fill(draw, target[key], value_field.message_type, known, depth + 1)
                else:
                    target[key] = draw(_scalar(value_field, known))
            continue
        if field.type == T.TYPE_MESSAGE:
            if depth >= MAX_DEPTH:
                continue
            if field.is_repeated:
                for _ in range(int(draw(st.integers(0, 3)))):  # type: ignore[call-overload]
                    _fill(draw, getattr(message, field.name).add(), field.message_type, known, depth + 1)
            else:
                sub = getattr(message, field.name)
                sub.SetInParent()
                _fill(draw, sub, field.message_type, known, depth + 1)
            continue
        if field.is_repeated:
            getattr(message, field.name).extend(draw(st.lists(_scalar(field, known), max_size=5)))  # type: ignore[arg-type]
        else:
            setattr(message, field.name, draw(_scalar(field, known)))


# -- a plausible request and its byte mutations -------------------------------------------


def seed_message(
    descriptor: Descriptor, known: Sequence[str] = (), by_field: Mapping[str, str] | None = None, depth: int = 0
) -> Message:
    """A request that looks like a client's: every field set to a plausible value (first oneof members).

    ``by_field`` names values for string fields by name (``conversation_id`` -> one that
    exists); other ``*_id`` fields get ``known[0]``.
    """
    message = GetMessageClass(descriptor)()
    for field in descriptor.fields:
        oneof = field.containing_oneof
        if oneof is not None and oneof.fields[0] is not field:
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            continue
        repeated = field.is_repeated
        if field.type == T.TYPE_MESSAGE:
            if depth >= 2:
                continue
            sub = getattr(message, field.name).add() if repeated else getattr(message, field.name)
            sub.CopyFrom(seed_message(field.message_type, known, by_field, depth + 1))
            if not repeated:
                sub.SetInParent()
            continue
        value = _plausible(field, known, by_field or {})
        if repeated:
            getattr(message, field.name).append(value)
        else:
            setattr(message, field.name, value)
    return message


def _plausible(field: FieldDescriptor, known: Sequence[str], by_field: Mapping[str, str]) -> object:
    kind = field.type
    if kind == T.TYPE_STRING:
        if field.name in by_field:
            return by_field[field.name]
        return known[0] if known and field.name.endswith("_id") else "hello"
    if kind == T.TYPE_BYTES:
        return b"hello"
    if kind == T.TYPE_BOOL:
        return True
    if kind in (T.TYPE_DOUBLE, T.TYPE_FLOAT):
        return 0.5
    if kind == T.TYPE_ENUM:
        values = field.enum_type.values
        return values[1].number if len(values) > 1 else values[0].number
    return 1


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _string_fields(descriptor: Descriptor) -> list[int]:
    return [f.number for f in descriptor.fields if f.type == T.TYPE_STRING] or [1]


def mutations(descriptor: Descriptor, valid: bytes, count: int, rng: random.Random) -> list[tuple[str, bytes]]:
    """``count`` mutated bodies of ``valid`` (labelled): fixed crafted ones first, then random."""
    strings = _string_fields(descriptor)
    bad_utf8 = [b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"ok\x80", b"\xf4\x90\x80\x80"]
    crafted: list[tuple[str, bytes]] = [
        ("empty body", b""),
        ("one 0xff byte", b"\xff"),
        ("0xff bytes", b"\xff" * 16),
        ("text, not protobuf", b"hello, not a protobuf message"),
        ("overlong varint", b"\x08" + b"\xff" * 11),
        ("length beyond the end", b"\x0a\xff\xff\xff\xff\x0f" + b"abc"),
        ("unmatched group start", b"\x0b"),
        ("group end without start", b"\x0c"),
        ("field number 0", b"\x00\x01"),
        ("reserved wire type 6", b"\x0e\x01"),
        ("fixed32 cut short", b"\x0d\x01\x02"),
        ("truncated to half", valid[: len(valid) // 2]),
        ("last byte dropped", valid[:-1]),
        ("unknown field 2000 appended", valid + _varint(2000 << 3 | 2) + b"\x03abc"),
        ("deep nesting", b"\x0a\x02" * 200),
    ]
    for number in strings:
        for raw in bad_utf8:
            crafted.append(
                (f"invalid UTF-8 {raw!r} in field {number}", valid + _varint(number << 3 | 2) + _varint(len(raw)) + raw)
            )
    out = crafted[:count]
    while len(out) < count:
        choice = rng.randrange(4)
        if choice == 0 and valid:
            body = bytearray(valid)
            for _ in range(rng.randint(1, 4)):
                body[rng.randrange(len(body))] ^= 1 << rng.randrange(8)
            out.append(("bit flips", bytes(body)))
        elif choice == 1 and valid:
            cut = rng.randrange(len(valid))
            out.append((f"truncated at {cut}", valid[:cut]))
        elif choice == 2:
            out.append(("random bytes", rng.randbytes(rng.randint(1, 64))))
        else:
            body = bytearray(valid)
            at = rng.randrange(len(body) + 1)
            body[at:at] = rng.randbytes(rng.randint(1, 8))
            out.append(("random bytes inserted", bytes(body)))
    return out


def new_id() -> str:
    """A fresh UUID string."""
    return str(uuid.uuid4())
