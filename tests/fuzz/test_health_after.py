"""After the fuzz modules (this file sorts after them): every service of the fuzzed mesh is still SERVING."""

from __future__ import annotations

from tests.fuzz import checks
from tests.fuzz.conftest import FuzzMesh
from tests.fuzz.test_fuzz_grpc import assert_serving


def test_every_service_is_serving_after_the_fuzzing(fuzz_mesh: FuzzMesh) -> None:
    for service in fuzz_mesh.targets:
        assert_serving(fuzz_mesh, service)
    # And still answers a plain, valid call.
    listed = fuzz_mesh.channel("inference").unary_unary("/chatmesh.inference.v1.InferenceService/ListModels")(
        b"", metadata=fuzz_mesh.metadata(), timeout=checks.TIMEOUT_S
    )
    assert listed  # the serialized ListModelsResponse: at least the bundled model
