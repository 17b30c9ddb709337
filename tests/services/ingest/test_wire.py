"""Upsert's wire decoding (services.ingest.wire) against protobuf's own decoding and protovalidate.

The fast path may only ever accept a request that the ordinary path would accept, with the
same content; everything else must come back as the ordinary message, so protovalidate's
own error reaches the caller.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import protovalidate
import pytest
from google.protobuf import struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from chatmesh.ingest.v1 import ingest_pb2 as pb
from services.ingest.protos import point_key, struct_dict
from services.ingest.wire import PointBatch, decode_upsert

UUID = "7d444840-9dc0-11d1-b245-5ffdce74fad2"


def request(points: int = 3, dim: int = 4, collection: str = "movies") -> pb.UpsertRequest:
    rng = np.random.default_rng(points * 31 + dim)
    return pb.UpsertRequest(
        collection=collection,
        points=[pb.Point(id=pb.PointId(num=i), vector=rng.random(dim).tolist()) for i in range(points)],
    )


def ordinary_is_refused(raw: bytes) -> bool:
    try:
        message = pb.UpsertRequest.FromString(raw)
    except Exception:  # noqa: BLE001 - a DecodeError is a refusal too
        return True
    try:
        protovalidate.validate(message)
    except protovalidate.ValidationError:
        return True
    return False


def assert_same_content(batch: PointBatch, raw: bytes) -> None:
    message = pb.UpsertRequest.FromString(raw)
    assert batch.collection == message.collection
    assert batch.ids == [point_key(p.id) for p in message.points]
    expected = np.asarray([list(p.vector) for p in message.points], dtype=np.float32)
    assert np.array_equal(batch.vectors, expected, equal_nan=True)  # NaN stays NaN, for the upserter to refuse
    for payload, point in zip(batch.payloads, message.points, strict=True):
        if point.HasField("payload") and point.payload.ByteSize():
            assert payload == (struct_dict(point.payload), point.payload.ByteSize())
        else:
            assert payload is None


def test_a_batch_of_points_decodes_to_the_same_ids_vectors_and_payloads() -> None:
    message = request(points=5, dim=7)
    message.points[1].id.CopyFrom(pb.PointId(uuid=UUID.upper()))
    message.points[2].payload.update({"title": "Heat", "year": 1995, "tags": ["crime"], "nested": {"a": True}})
    raw = message.SerializeToString()
    batch = decode_upsert(raw)
    assert isinstance(batch, PointBatch)
    assert batch.vectors.shape == (5, 7)
    assert batch.ids[1] == UUID  # canonical, lowercase, as the ordinary path keys it
    assert_same_content(batch, raw)


def test_a_vector_sent_as_several_packed_blocks_is_joined_as_protobuf_does() -> None:
    head = pb.Point(id=pb.PointId(num=9)).SerializeToString()
    floats = [0.5, 1.5, 2.5, 3.5]
    blocks = b"".join(b"\x12\x08" + struct.pack("<2f", *floats[i : i + 2]) for i in (0, 2))  # field 2, 8 bytes each
    point = head + blocks
    raw = b"\x0a\x06movies" + b"\x12" + bytes([len(point)]) + point
    batch = decode_upsert(raw)
    assert isinstance(batch, PointBatch)
    assert batch.vectors.tolist() == [floats]
    assert_same_content(batch, raw)


def unpacked(raw_floats: list[float]) -> bytes:
    """A point with vector floats encoded one by one (wire type 5), as a proto2 writer may."""
    body = pb.Point(id=pb.PointId(num=1)).SerializeToString()
    body += b"".join(b"\x15" + struct.pack("<f", x) for x in raw_floats)
    return b"\x0a\x06movies" + b"\x12" + bytes([len(body)]) + body


def refused_cases() -> dict[str, bytes]:
    cases: dict[str, pb.UpsertRequest] = {}
    cases["bad collection name"] = request(collection="Movies!")
    cases["no points"] = pb.UpsertRequest(collection="movies")
    cases["257 points"] = request(points=257, dim=1)
    no_id = request()
    no_id.points[1].ClearField("id")
    cases["a point without an id"] = no_id
    empty_id = request()
    empty_id.points[0].id.Clear()
    empty_id.points[0].id.SetInParent()
    cases["an id of neither kind"] = empty_id
    for bad in ("7d444840-9dc0-11d1-b245-5ffdce74fad", "7d4448409dc011d1b2455ffdce74fad2", "{" + UUID + "}",
                "7d44-4840-9dc0-11d1-b2455ffdce74fad2"):  # fmt: skip
        wrong = request()
        wrong.points[0].id.CopyFrom(pb.PointId(uuid=bad))
        cases[f"uuid {bad}"] = wrong
    empty_vector = request()
    del empty_vector.points[2].vector[:]
    cases["an empty vector"] = empty_vector
    cases["4,097 floats"] = request(points=1, dim=4097)
    both = request()
    both.documents.add(text="a document too")
    cases["points and documents"] = both
    raws = {name: m.SerializeToString() for name, m in cases.items()}
    raws["not protobuf"] = b"\xff\xff\xff"
    return raws


@pytest.mark.parametrize("name", sorted(refused_cases()))
def test_what_the_contract_refuses_goes_to_the_ordinary_decoding(name: str) -> None:
    raw = refused_cases()[name]
    assert ordinary_is_refused(raw), "the case must break a rule or the wire format"
    try:
        decoded = decode_upsert(raw)
    except Exception:  # noqa: BLE001 - what protobuf cannot decode, the ordinary path raises for
        return
    assert isinstance(decoded, pb.UpsertRequest)


def test_shapes_only_the_ordinary_path_may_judge_are_left_to_it() -> None:
    uneven = request(points=2, dim=3)
    uneven.points[1].vector.append(1.0)  # 3 and 4 floats: the ordinary path names points[1]
    assert isinstance(decode_upsert(uneven.SerializeToString()), pb.UpsertRequest)
    assert isinstance(decode_upsert(unpacked([1.0, 2.0])), pb.UpsertRequest)
    unknown = request().SerializeToString() + b"\xa0\x06\x01"  # field 100, a varint: ignored, not checked here
    assert isinstance(decode_upsert(unknown), pb.UpsertRequest)
    documents = pb.UpsertRequest(collection="movies", documents=[pb.Document(text="hello")])
    assert isinstance(decode_upsert(documents.SerializeToString()), pb.UpsertRequest)


def test_non_finite_components_reach_the_service_check_intact() -> None:
    message = request(points=2, dim=3)
    message.points[1].vector[2] = math.nan
    batch = decode_upsert(message.SerializeToString())
    assert isinstance(batch, PointBatch)
    assert math.isnan(batch.vectors[1, 2])  # the upserter refuses it, naming points[1].vector


_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def wire_requests(draw: st.DrawFn) -> bytes:
    message = pb.UpsertRequest(collection=draw(st.sampled_from(["movies", "m_2", "", "9x", "a" * 64])))
    dim = draw(st.integers(0, 6))
    for _ in range(draw(st.integers(0, 5))):
        point = message.points.add()
        kind = draw(st.sampled_from(["num", "uuid", "bad-uuid", "none"]))
        if kind == "num":
            point.id.num = draw(st.integers(0, 2**64 - 1))
        elif kind == "uuid":
            point.id.uuid = UUID
        elif kind == "bad-uuid":
            point.id.uuid = draw(st.text(max_size=40))
        width = dim + draw(st.sampled_from([0, 0, 0, 1]))
        point.vector.extend(draw(st.lists(st.floats(width=32), min_size=width, max_size=width)))
        if draw(st.booleans()):
            struct = struct_pb2.Struct()
            struct.update(draw(st.dictionaries(st.text(max_size=4), _values, max_size=3)))
            point.payload.CopyFrom(struct)
    raw = message.SerializeToString()
    return raw + draw(st.sampled_from([b"", b"", b"", b"\xa0\x06\x01", b"\x1a\x00"]))


@settings(max_examples=400, deadline=None)
@given(wire_requests())
def test_the_fast_path_accepts_only_what_the_contract_accepts_with_the_same_content(raw: bytes) -> None:
    try:
        decoded = decode_upsert(raw)
    except Exception:  # noqa: BLE001 - undecodable: the ordinary path refuses it too
        assert ordinary_is_refused(raw)
        return
    if isinstance(decoded, PointBatch):
        assert not ordinary_is_refused(raw)
        assert_same_content(decoded, raw)
