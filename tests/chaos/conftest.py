"""The chaos suite (`make test-chaos`): a whole mesh under load, its processes killed in turn.

Not part of `make test`: it runs only when CHATMESH_CHAOS=1 (what `make test-chaos` sets).
Each test records, per fault, the operations clients got acknowledged and how many of them
were then found stored and delivered; the terminal summary prints that table.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest_mesh import LiveMesh, mesh_environment

ROOT = Path(__file__).resolve().parents[2]

if os.environ.get("CHATMESH_CHAOS") != "1":
    collect_ignore_glob = ["test_*.py"]

#: Rows of the report: (test, fault, acked, stored, delivered, submissions acked, submissions stored, errors).
REPORT: list[tuple[str, str, int, int, int, int, int, str]] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The per-fault table: acknowledged, stored once, delivered once to every device."""
    if not REPORT:
        return
    write = terminalreporter.write_line
    terminalreporter.section("chaos: acknowledged vs stored vs delivered, per fault")
    write(f"{'test':<10} {'fault':<18} {'messages':<40} {'submissions':<24} errors clients saw")
    for test, fault, acked, stored, delivered, sub_acked, sub_stored, errors in REPORT:
        messages = f"acked={acked} stored={stored} delivered={delivered}"
        submissions = f"acked={sub_acked} stored={sub_stored}"
        write(f"{test:<10} {fault:<18} {messages:<40} {submissions:<24} {errors}")


def start_mesh(state: Path, extra: dict[str, str], timeout_s: float = 600) -> LiveMesh:
    """`python -m mesh up --detach` on free ports with ``extra`` settings."""
    env = {**mesh_environment(state), **extra}
    started = time.monotonic()
    up = subprocess.run(
        [sys.executable, "-m", "mesh", "up", "--detach"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if up.returncode != 0:
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted((state / "logs").glob("*.log")))
        stop_mesh(LiveMesh(env=env, state_dir=state))
        pytest.fail(f"mesh up failed:\n{up.stdout}\n{up.stderr}\n{logs}")
    print(f"mesh up in {time.monotonic() - started:.0f}s", flush=True)
    return LiveMesh(env=env, state_dir=state)


def stop_mesh(mesh: LiveMesh) -> None:
    """`python -m mesh down`."""
    subprocess.run(
        [sys.executable, "-m", "mesh", "down"], cwd=ROOT, env=mesh.env, capture_output=True, timeout=300, check=False
    )


@pytest.fixture
def chaos_state(tmp_path: Path) -> Iterator[Path]:
    """State folder of one test's mesh."""
    yield tmp_path / "state"
