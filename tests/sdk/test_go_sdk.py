"""The Go SDK (gen/go) against a real mesh: its own tests, the quickstart, the README example.

Go builds the SDK from the committed generated code and gen/go/go.mod; the first run
downloads the modules into Go's module cache and compiles grpc (a minute or so), later
runs take seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import grpc
import pytest

from chatmesh.history.v1 import history_pb2 as hpb
from chatmesh.history.v1 import history_pb2_grpc
from chatmesh.session.v1 import session_pb2 as spb
from chatmesh.session.v1 import session_pb2_grpc
from tests.conftest_mesh import LiveMesh

ROOT = Path(__file__).resolve().parents[2]
GO_MODULE = ROOT / "gen" / "go"
PASSWORD = "correct horse battery"

pytestmark = pytest.mark.e2e


def go(args: list[str], cwd: Path, mesh: LiveMesh, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Runs the go tool with the mesh's gateway in CHATMESH_GATEWAY."""
    binary = shutil.which("go")
    assert binary, "the Go SDK tests need Go on PATH (see README: Go is a prerequisite)"
    goflags = f"{os.environ.get('GOFLAGS', '')} -mod=mod".strip()  # as the Makefile exports it
    env = {**os.environ, "CHATMESH_GATEWAY": mesh.gateway_target, "GOFLAGS": goflags}
    return subprocess.run(
        [binary, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def unique(prefix: str) -> str:
    """A username no other test (nor an earlier run on the same mesh) has."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def register(mesh: LiveMesh, username: str) -> spb.RegisterResponse:
    """Creates an account through the gateway, as any client would."""
    with grpc.insecure_channel(mesh.gateway_target) as channel:
        response: spb.RegisterResponse = session_pb2_grpc.SessionServiceStub(channel).Register(
            spb.RegisterRequest(username=username, password=PASSWORD, device_name="pytest"), timeout=30
        )
        return response


def messages_seen_by(mesh: LiveMesh, token: str) -> list[hpb.Message]:
    """The last message of each of the user's conversations."""
    with grpc.insecure_channel(mesh.gateway_target) as channel:
        listed: hpb.ListConversationsResponse = history_pb2_grpc.HistoryServiceStub(channel).ListConversations(
            hpb.ListConversationsRequest(), metadata=(("authorization", f"Bearer {token}"),), timeout=30
        )
        return [c.last_message for c in listed.conversations]


def test_go_sdk_tests_pass_against_the_mesh(live_mesh: LiveMesh) -> None:
    result = go(["test", "-count=1", "-v", "./..."], GO_MODULE, live_mesh)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "--- PASS: TestMessageSentFromGoReachesThePeersStreamAndHistory" in output
    assert "--- SKIP" not in output, output


def test_quickstart_sends_the_message_and_prints_it_and_the_peer_has_it(live_mesh: LiveMesh) -> None:
    bob_name = unique("gobob")
    bob = register(live_mesh, bob_name)
    ann_name = unique("goann")
    text = f"hello bob, from the Go quickstart {uuid.uuid4().hex[:6]}"

    result = go(
        [
            "run",
            "./examples/quickstart",
            "-gateway",
            live_mesh.gateway_target,
            "-user",
            ann_name,
            "-password",
            PASSWORD,
            "-peer",
            bob_name,
            "-text",
            text,
        ],
        GO_MODULE,
        live_mesh,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"logged in as {ann_name} (user id " in result.stdout
    sent = re.search(r"^sent #1 \(message id ([0-9a-f-]{36})\): (.*)$", result.stdout, re.MULTILINE)
    assert sent and sent.group(2) == text, result.stdout
    [last] = messages_seen_by(live_mesh, bob.tokens.access_token)
    assert (last.message_id, last.text) == (sent.group(1), text)


def test_quickstart_without_a_peer_says_what_it_needs(live_mesh: LiveMesh) -> None:
    result = go(["run", "./examples/quickstart", "-user", "ann"], GO_MODULE, live_mesh)

    assert result.returncode != 0
    assert "-user, -password and -peer are required" in result.stderr
    assert "exit status 2" in result.stderr  # the program's own status, as `go run` reports it


def readme_go_blocks() -> list[str]:
    """The ```go blocks of gen/go/README.md, in order."""
    return re.findall(r"^```go\n(.*?)^```$", (GO_MODULE / "README.md").read_text(), re.MULTILINE | re.DOTALL)


def readme_program(gateway: str, ann: str, bob: str) -> str:
    """The README's opening lines inside the README's file skeleton, aimed at this mesh."""
    lines, skeleton = readme_go_blocks()[:2]
    assert "// ...the lines above...\n" in skeleton
    body = "".join(f"\t{line}\n" for line in lines.splitlines())
    program = skeleton.replace("\t// ...the lines above...\n", body)
    return program.replace('"127.0.0.1:8080"', f'"{gateway}"').replace('"ann"', f'"{ann}"').replace('"bob"', f'"{bob}"')


def test_the_readme_example_sends_a_message(live_mesh: LiveMesh, tmp_path: Path) -> None:
    bob_name, ann_name = unique("readmebob"), unique("readmeann")
    bob = register(live_mesh, bob_name)
    assert len(readme_go_blocks()[0].splitlines()) <= 10  # the README opens with ten lines at most
    (tmp_path / "main.go").write_text(readme_program(live_mesh.gateway_target, ann_name, bob_name))
    (tmp_path / "go.mod").write_text(
        "module readme\n\ngo 1.24.0\n\n"
        "require github.com/chatmesh/chatmesh/gen/go v0.0.0\n\n"
        f"replace github.com/chatmesh/chatmesh/gen/go => {GO_MODULE}\n"
    )
    shutil.copy(GO_MODULE / "go.sum", tmp_path / "go.sum")

    result = go(["run", "."], tmp_path, live_mesh)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "1 hi bob\n"
    [last] = messages_seen_by(live_mesh, bob.tokens.access_token)
    assert last.text == "hi bob"
