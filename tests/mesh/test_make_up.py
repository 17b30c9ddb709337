"""`make up-detached`, grpcurl through the gateway, a crash and its restart, `make down`."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest_mesh import MESH_SERVICES as SERVICES
from tests.conftest_mesh import mesh_environment, port_free

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _grpcurl(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "bin" / "grpcurl"), "-plaintext", *args[:-1], f"127.0.0.1:{port}", *args[-1:]],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture
def mesh_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a mesh of its own: every port free, state under tmp_path."""
    return mesh_environment(tmp_path / "state")


def _make(target: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", target], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_make_up_detached_serves_every_service_through_the_gateway_and_make_down_leaves_nothing(
    mesh_env: dict[str, str],
) -> None:
    gateway_port = int(mesh_env["CHATMESH_MESH_GATEWAY_PORT"])
    state = Path(mesh_env["CHATMESH_MESH_STATE_DIR"])
    pids: set[int] = set()
    try:
        up = _make("up-detached", mesh_env, timeout=420)
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"gateway at http://127.0.0.1:{gateway_port}" in up.stdout
        pid_files = {p.stem: int(p.read_text()) for p in (state / "run").glob("*.pid")}
        pids = set(pid_files.values())
        # supervisor, nats, cassandra, six services, catalog, web, the xDS control plane, envoy, a forms
        # worker, two ingest workers
        assert len(pids) == 16
        assert "xds" in pid_files

        listed = _grpcurl(gateway_port, "list")
        assert listed.returncode == 0, listed.stderr
        assert [line for line in listed.stdout.splitlines() if line.startswith("chatmesh.")] == SERVICES

        # A crashed service comes back by itself.
        history_pid = int((state / "run" / "history.pid").read_text())
        os.kill(history_pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        restarted = False
        while time.monotonic() < deadline and not restarted:
            time.sleep(0.5)
            pid_file = state / "run" / "history.pid"
            restarted = pid_file.exists() and int(pid_file.read_text()) != history_pid
        assert restarted, "the supervisor did not restart the killed history service"
        pids.add(int((state / "run" / "history.pid").read_text()))
        deadline = time.monotonic() + 60
        while True:
            answer = _grpcurl(gateway_port, "-d", "{}", "chatmesh.history.v1.HistoryService/ListConversations")
            if "Unauthenticated" in answer.stderr or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert "Unauthenticated" in answer.stderr, answer.stderr  # served again (and still checks tokens)
    finally:
        down = _make("down", mesh_env, timeout=180)
    assert down.returncode == 0, down.stdout + down.stderr
    alive = [pid for pid in pids if _alive(pid)]
    assert alive == [], f"processes left behind: {alive}"
    ports = [int(v) for k, v in mesh_env.items() if k.startswith("CHATMESH_MESH_") and k.endswith("_PORT")]
    assert all(port_free(p) for p in ports), "a port is still taken"
