"""Replicas coming and going under load, seen from clients of the gateway (issue 14's "Shown by").

One mesh, started as users start it (`python -m mesh up --detach`) with two replicas of
every service but ingest, carries a steady load (tests/e2e/scale_load.py: users sending
and paging through plain stubs, which never retry, and Connect streams through the SDK)
while replicas are killed, restarted one by one, added, and the control plane dies.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from mesh.xds.probe import parse_clusters
from tests.conftest_mesh import ROOT, LiveMesh, mesh_environment
from tests.e2e.scale_load import SteadyLoad

REPLICAS = "session=2,history=2,presence=2,inference=2,forms=2"


@pytest.fixture(scope="module")
def replicated_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveMesh]:
    """A mesh with two replicas of every service but ingest."""
    state = tmp_path_factory.mktemp("scale-mesh") / "state"
    env = mesh_environment(state)
    env["CHATMESH_MESH_REPLICAS"] = REPLICAS
    env["CHATMESH_MESH_INGEST_WORKERS"] = "1"
    mesh = [sys.executable, "-m", "mesh"]
    try:
        up = subprocess.run(
            [*mesh, "up", "--detach"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        if up.returncode != 0:
            logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted((state / "logs").glob("*.log")))
            pytest.fail(f"mesh up failed:\n{up.stdout}\n{up.stderr}\n{logs}")
        yield LiveMesh(env=env, state_dir=state)
    finally:
        subprocess.run([*mesh, "down"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def _pid(mesh: LiveMesh, name: str) -> int:
    return int((mesh.state_dir / "run" / f"{name}.pid").read_text())


def _hosts(mesh: LiveMesh, cluster: str) -> dict[str, str]:
    """Envoy's hosts of ``cluster``: address -> health flags."""
    port = int(mesh.env["CHATMESH_MESH_GATEWAY_ADMIN_PORT"])
    hosts = parse_clusters(urllib.request.urlopen(f"http://127.0.0.1:{port}/clusters", timeout=2).read().decode())
    return {address: host.health_flags for address, host in hosts.get(cluster, {}).items()}


async def _mesh_command(mesh: LiveMesh, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mesh", *args, cwd=ROOT, env=mesh.env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await proc.communicate()
    assert proc.returncode == 0, output.decode()
    return output.decode()


def _failures(load: SteadyLoad, start: float, end: float) -> list[str]:
    _, failed = load.window(start, end)
    return [f"{c.method}: {c.code.name} {c.details}" for c in failed]


async def test_a_killed_history_replica_costs_no_call_and_no_event(replicated_mesh: LiveMesh) -> None:
    load = SteadyLoad(replicated_mesh.gateway_target, users=6)
    await load.setup()
    load.start()
    try:
        start = time.monotonic()
        await asyncio.sleep(3)
        victim = _pid(replicated_mesh, "history-2")
        os.killpg(victim, signal.SIGKILL)
        await asyncio.sleep(8)  # the supervisor restarts it meanwhile
        end = time.monotonic()
        await load.stop()
        calls, _ = load.window(start, end)
        # SendMessage (idempotent by client id) and ListMessages (no side effects) in flight
        # on the killed replica are retried by Envoy on the other one.
        assert calls > 50
        assert _failures(load, start, end) == []
        await load.settle()
        check = load.check()
        assert (check.missing, check.duplicated, check.out_of_order) == (0, 0, 0), check
    finally:
        await load.close()


async def test_a_rolling_restart_of_every_service_fails_no_call_and_loses_no_event(
    replicated_mesh: LiveMesh,
) -> None:
    load = SteadyLoad(replicated_mesh.gateway_target, users=6)
    await load.setup()
    load.start()
    try:
        before = {name: _pid(replicated_mesh, name) for name in ("session-1", "session-2", "history-1", "history-2")}
        start = time.monotonic()
        output = await _mesh_command(replicated_mesh, "restart", "--rolling")
        end = time.monotonic()
        await load.stop()
        calls, _ = load.window(start, end)
        assert calls > 100
        assert _failures(load, start, end) == []
        assert all(_pid(replicated_mesh, name) != pid for name, pid in before.items()), output
        await load.settle()
        check = load.check()
        assert check.expected > 0
        assert (check.missing, check.duplicated, check.out_of_order) == (0, 0, 0), check
    finally:
        await load.close()


async def test_the_control_plane_killed_under_load_fails_no_call_and_a_replica_added_meanwhile_shows_up(
    replicated_mesh: LiveMesh,
) -> None:
    load = SteadyLoad(replicated_mesh.gateway_target, users=4)
    await load.setup()
    load.start()
    try:
        start = time.monotonic()
        known = set(_hosts(replicated_mesh, "presence"))
        xds = _pid(replicated_mesh, "xds")
        os.killpg(xds, signal.SIGSTOP)  # dead to Envoy: no answer, no push
        try:
            await asyncio.sleep(2)
            output = await _mesh_command(replicated_mesh, "scale", "presence=3")
            added = re.search(r"port (\d+)", output)
            assert added, output
            address = f"127.0.0.1:{added.group(1)}"
            await asyncio.sleep(2)
            assert address not in _hosts(replicated_mesh, "presence")  # nobody told Envoy yet
        finally:
            os.killpg(xds, signal.SIGKILL)  # and now it is gone; the supervisor starts it again
        deadline = time.monotonic() + 30
        while address not in _hosts(replicated_mesh, "presence") and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert set(_hosts(replicated_mesh, "presence")) == known | {address}
        end = time.monotonic()
        await load.stop()
        assert _failures(load, start, end) == []
        await _mesh_command(replicated_mesh, "scale", "presence=2")
        assert address not in _hosts(replicated_mesh, "presence")
    finally:
        await load.close()


def test_the_replicas_have_their_own_ports_logs_and_health(replicated_mesh: LiveMesh) -> None:
    logs = {p.name for p in (replicated_mesh.state_dir / "logs").glob("*.log")}
    for service in ("session", "history", "presence", "inference", "forms"):
        assert {f"{service}-1.log", f"{service}-2.log"} <= logs
        hosts = _hosts(replicated_mesh, service)
        assert len(hosts) == 2, hosts
        assert all(flags == "healthy" for flags in hosts.values()), hosts
    assert "ingest.log" in logs
    assert len(_hosts(replicated_mesh, "ingest")) == 1
