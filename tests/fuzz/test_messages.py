"""The fuzzer's own parts, without a mesh: every RPC found, generated requests parse, mutations as labelled."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh.contracts import load_all
from tests.fuzz import checks
from tests.fuzz.messages import all_rpcs, message_strategy, mutations, seed_message

RPCS = all_rpcs()


def test_every_rpc_of_every_contract_is_fuzzed() -> None:
    contracts = load_all()
    assert {rpc.service for rpc in RPCS} == {c.name for c in contracts}
    streaming = {p for c in contracts for p in (*c.server_streaming, *c.client_streaming)}
    assert {rpc.path for rpc in RPCS if rpc.server_streaming or rpc.client_streaming} == streaming
    assert len(RPCS) >= 50


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_generated_requests_are_valid_protobuf_of_their_rpc(data: st.DataObject) -> None:
    rpc = data.draw(st.sampled_from(RPCS))
    body = data.draw(message_strategy(rpc.method.input_type, ["known-id"]))
    assert checks.parses(rpc, body)


def test_mutations_start_with_the_crafted_ones_and_include_invalid_utf8() -> None:
    rpc = next(r for r in RPCS if r.path.endswith("/Login"))
    valid = seed_message(rpc.method.input_type).SerializeToString()
    assert checks.parses(rpc, valid) and valid
    bodies = mutations(rpc.method.input_type, valid, 60, random.Random(1))
    assert len(bodies) == 60
    labels = [label for label, _ in bodies]
    assert labels[0] == "empty body"
    utf8 = [body for label, body in bodies if label.startswith("invalid UTF-8")]
    assert utf8 and not any(checks.parses(rpc, body) for body in utf8)


def test_a_leaky_message_is_a_finding_and_a_plain_one_is_not() -> None:
    rpc = RPCS[0]
    leaky = checks.Outcome(checks.grpc.StatusCode.INVALID_ARGUMENT, "Unexpected <class 'DecodeError'>", 0.1, 0)
    plain = checks.Outcome(checks.grpc.StatusCode.INVALID_ARGUMENT, "request: not a valid LoginRequest", 0.1, 0)
    assert checks.problems(rpc, leaky) == ["the message shows internals"]
    assert checks.problems(rpc, plain) == []
    assert checks.problems(rpc, checks.Outcome(checks.grpc.StatusCode.INTERNAL, "", 0.1, 0)) == ["answered INTERNAL"]
