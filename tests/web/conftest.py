"""The browser tests' needs of the shared mesh.

The forms scenario makes a consumer really fail (the sheets consumer's folder for one form
is a plain file) and redrives the dead letter from the page. The sheets consumer's own
retries (ten, over about seven minutes) are right for a real sink and too slow for a test,
so the shared mesh is started with that consumer giving up after two tries
(``CHATMESH_FORMS_CONSUMERS``, the forms service's per-consumer override). This wraps
``tests.conftest_mesh.mesh_environment``, which the session's ``live_mesh`` fixture calls,
so only that mesh gets it; when some other test started the mesh first without it, the
scenario says so and skips its dead-letter step.
"""

from __future__ import annotations

import json
from pathlib import Path

import tests.conftest_mesh as conftest_mesh

#: Per-consumer overrides the browser scenarios need (merged into any the environment sets).
FORMS_CONSUMERS = {"sheets": {"max_deliveries": 2}}

_original = conftest_mesh.mesh_environment


def _with_quick_dead_letters(state_dir: Path) -> dict[str, str]:
    env = _original(state_dir)
    overrides = json.loads(env.get("CHATMESH_FORMS_CONSUMERS") or "{}")
    for name, values in FORMS_CONSUMERS.items():
        overrides[name] = {**values, **overrides.get(name, {})}
    env["CHATMESH_FORMS_CONSUMERS"] = json.dumps(overrides)
    return env


if getattr(conftest_mesh.mesh_environment, "__wrapped_for_web__", False) is False:
    _with_quick_dead_letters.__wrapped_for_web__ = True  # type: ignore[attr-defined]
    conftest_mesh.mesh_environment = _with_quick_dead_letters
