"""gen/ts/README.md's opening example, run as written (Node, gRPC-web) against a real mesh.

It uses the built package (``make sdk-ts``: gen/ts/dist) and the Connect packages of web/.
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
SDK = ROOT / "gen" / "ts"
WEB = ROOT / "web"
PASSWORD = "correct horse battery"

pytestmark = pytest.mark.e2e


def readme_example() -> str:
    """The first ```ts block of gen/ts/README.md."""
    match = re.search(r"```ts\n(.*?)```", (SDK / "README.md").read_text(), re.DOTALL)
    assert match, "gen/ts/README.md has no ```ts example"
    return match.group(1)


def test_the_readme_example_is_ten_lines_of_code_at_the_top() -> None:
    text = (SDK / "README.md").read_text()
    assert text.index("```ts") < 40
    assert len([line for line in readme_example().splitlines() if line.strip()]) <= 11


def test_the_readme_example_logs_in_and_sends_through_the_gateway(live_mesh: LiveMesh) -> None:
    if shutil.which("node") is None:
        pytest.fail("the SDK example needs Node.js on PATH")
    if not (SDK / "dist" / "chatmesh" / "session" / "v1" / "session_pb.js").is_file():
        pytest.fail("gen/ts/dist is not built: run `make sdk-ts`")
    if not (WEB / "node_modules" / "@connectrpc" / "connect-web").is_dir():
        pytest.fail("web/node_modules is missing: run `make web`")
    username = f"readme{uuid.uuid4().hex[:12]}"
    with grpc.insecure_channel(live_mesh.gateway_target) as channel:
        session_pb2_grpc.SessionServiceStub(channel).Register(
            spb.RegisterRequest(username=username, password=PASSWORD, device_name="pytest"), timeout=30
        )
    script = (
        readme_example()
        .replace("http://127.0.0.1:8080", live_mesh.gateway_url)
        .replace('username: "ann"', f'username: "{username}"')
        .replace('password: "correct horse"', f'password: "{PASSWORD}"')
        .replace("@chatmesh/sdk/", f"{(SDK / 'dist').as_uri()}/")
    )
    # Inside web/ so that @connectrpc/* resolve from web/node_modules.
    path = WEB / f".readme-example-{uuid.uuid4().hex[:8]}.mjs"
    path.write_text(script)
    try:
        result = subprocess.run(
            ["node", str(path)], cwd=WEB, env=dict(os.environ), capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        path.unlink(missing_ok=True)
    assert result.returncode == 0, result.stdout + result.stderr

    with grpc.insecure_channel(live_mesh.gateway_target) as channel:
        login = session_pb2_grpc.SessionServiceStub(channel).Login(
            spb.LoginRequest(username=username, password=PASSWORD, device_name="pytest"), timeout=30
        )
        listed = history_pb2_grpc.HistoryServiceStub(channel).ListConversations(
            hpb.ListConversationsRequest(),
            metadata=[("authorization", f"Bearer {login.tokens.access_token}")],
            timeout=30,
        )
    assert [c.last_message.text for c in listed.conversations] == ["hello"]
