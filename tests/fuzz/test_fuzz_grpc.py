"""Every RPC of every service with (a) hypothesis-generated requests and (b) byte mutations of a valid one.

Sent with a valid user token (an internal RPC: a service token acting for the user). No
answer may be INTERNAL or UNKNOWN, show internals (tracebacks, class names), or take
longer than a few seconds; the service stays SERVING. Budget: CHATMESH_FUZZ_EXAMPLES and
CHATMESH_FUZZ_MUTATIONS per RPC (``make fuzz-long`` for a long run); CHATMESH_FUZZ_REPORT
appends every finding as a JSON line.
"""

from __future__ import annotations

import random

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz import checks
from tests.fuzz.conftest import FuzzMesh
from tests.fuzz.messages import Rpc, all_rpcs, message_strategy, mutations, seed_message

RPCS = all_rpcs()


def assert_serving(fuzz_mesh: FuzzMesh, service: str) -> None:
    """The service's health is SERVING (after the fuzzing)."""
    stub = health_pb2_grpc.HealthStub(fuzz_mesh.channel(service))
    reply = stub.Check(health_pb2.HealthCheckRequest(service=fuzz_mesh.full_names[service]), timeout=checks.TIMEOUT_S)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING, f"{service} is {reply.status} after fuzzing"


@pytest.mark.parametrize("rpc", RPCS, ids=str)
def test_generated_requests_get_a_specific_answer(fuzz_mesh: FuzzMesh, rpc: Rpc) -> None:
    descriptor = rpc.method.input_type
    body = message_strategy(descriptor, fuzz_mesh.known)
    bodies = st.lists(body, min_size=1, max_size=3) if rpc.client_streaming else body.map(lambda b: [b])

    @settings(
        max_examples=checks.EXAMPLES,
        deadline=None,
        database=None,
        derandomize=not checks.RANDOM,
        phases=(Phase.explicit, Phase.generate),  # a finding is reported as found: no shrinking calls
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(bodies)
    def check(requests: list[bytes]) -> None:
        outcome = checks.call(fuzz_mesh.channel(rpc.service), rpc, requests, fuzz_mesh.metadata_for(rpc))
        found = checks.problems(rpc, outcome, requests[0])
        if found:
            checks.record("generated", rpc, "hypothesis", requests[0], *checks.fields(outcome), found)
        assert not found, checks.describe(rpc, "generated", requests[0], outcome, found)

    check()
    assert_serving(fuzz_mesh, rpc.service)


@pytest.mark.parametrize("rpc", RPCS, ids=str)
def test_mutated_bytes_get_a_specific_answer(fuzz_mesh: FuzzMesh, rpc: Rpc) -> None:
    descriptor = rpc.method.input_type
    valid = seed_message(descriptor, fuzz_mesh.known, fuzz_mesh.by_field).SerializeToString()
    rng = random.Random(None if checks.RANDOM else rpc.path)
    failures = []
    for label, body in mutations(descriptor, valid, checks.MUTATIONS, rng):
        bodies = [valid, body] if rpc.client_streaming else [body]
        outcome = checks.call(fuzz_mesh.channel(rpc.service), rpc, bodies, fuzz_mesh.metadata_for(rpc))
        found = checks.problems(rpc, outcome, body)
        if found:
            checks.record("mutated", rpc, label, body, *checks.fields(outcome), found)
            failures.append(checks.describe(rpc, label, body, outcome, found))
    assert not failures, f"{len(failures)} of {checks.MUTATIONS} mutated requests:\n" + "\n".join(failures)
    assert_serving(fuzz_mesh, rpc.service)
