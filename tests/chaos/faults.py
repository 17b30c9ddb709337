"""Killing a mesh process and waiting for the mesh to serve again; checking the books after."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from tests.chaos.conftest import REPORT
from tests.chaos.load import Load, Phase
from tests.conftest_mesh import LiveMesh

#: Generous bounds (not timings): a restarted Cassandra on a busy 2-core machine takes a while.
RESTART_TIMEOUT_S = 300.0
SETTLE_TIMEOUT_S = 180.0


def pid_of(mesh: LiveMesh, name: str) -> int:
    """The pid the supervisor wrote for ``name``."""
    return int((mesh.state_dir / "run" / f"{name}.pid").read_text())


def alive(pid: int) -> bool:
    """Whether ``pid`` runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def kill_and_recover(load: Load, mesh: LiveMesh, fault: str, progress: int = 20) -> Phase:
    """SIGKILL ``fault`` under load; return once the supervisor restarted it and sends are acked again.

    ``fault`` is a process name, or several joined by "+" (killed at the same moment: each
    is restarted on its own, none waits for another's slow start).
    """
    names = fault.split("+")
    phase = load.begin(fault)
    await load.wait_progress(5, RESTART_TIMEOUT_S)  # the load runs before the fault
    restarts = {name: restarted(mesh, name) for name in names}
    old = {name: pid_of(mesh, name) for name in names}
    for name in names:
        os.kill(old[name], signal.SIGKILL)
    # Clients keep being served, or get UNAVAILABLE and retry, while it is down...
    await load.wait_progress(progress, RESTART_TIMEOUT_S)
    # ...and the supervisor brings it back, healthy, by itself.
    deadline = time.monotonic() + RESTART_TIMEOUT_S
    for name in names:
        while restarted(mesh, name) == restarts[name]:
            assert time.monotonic() < deadline, f"the supervisor did not restart {name}"
            await asyncio.sleep(0.2)
        assert pid_of(mesh, name) != old[name] and alive(pid_of(mesh, name))
    await load.wait_progress(progress, RESTART_TIMEOUT_S)
    return phase


def restarted(mesh: LiveMesh, name: str) -> int:
    """How many times the supervisor said it restarted ``name`` (healthy again)."""
    log: Path = mesh.state_dir / "logs" / "supervisor.log"
    return log.read_text().count(f"chatmesh: {name} restarted\n") if log.exists() else 0


async def settle_and_report(load: Load, test: str) -> list[tuple[str, int, int, int, int, int]]:
    """Stop sending, wait (bounded) for the stores and streams to catch up; record and return the books.

    Returns one row per phase: (fault, acked, stored once, delivered once to every device,
    submissions acked, submissions stored once).
    """
    await load.stop_sending()
    acked = load.all_acked_message_ids()
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while not load.delivered_everywhere(acked) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    keys = {key for phase in load.phases for key in phase.acked_submissions}
    while True:
        submissions = await load.stored_submissions()
        if keys <= submissions.keys() or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    stored = await load.stored_messages()
    rows = []
    for phase in load.phases:
        stored_once = sum(1 for cid in phase.acked_messages if stored[cid] == 1)
        delivered_once = sum(
            1
            for mid in phase.acked_messages.values()
            if all(len(reader.seen.get(mid, ())) == 1 for reader in load.readers)
        )
        sub_stored = sum(1 for key in phase.acked_submissions if submissions[key] == 1)
        errors = ", ".join(f"{k}={v}" for k, v in sorted(phase.errors.items())) or "-"
        for cid, seq in phase.acked_sequences.items():  # say how each acknowledged message went astray
            if stored[cid] != 1:
                there = load.stored_at.get(seq)
                fate = "missing" if there is None else ("overwritten" if there != cid else "stored")
                errors += f"; seq {seq} acked, stored {stored[cid]}x, at its seq: {fate}"
        row = (phase.name, len(phase.acked_messages), stored_once, delivered_once)
        REPORT.append((test, *row, len(phase.acked_submissions), sub_stored, errors))
        rows.append((*row, len(phase.acked_submissions), sub_stored))
    return rows


def assert_books_balance(load: Load, rows: list[tuple[str, int, int, int, int, int]]) -> None:
    """Every acknowledged operation stored once and delivered once; failures were UNAVAILABLE only."""
    for fault, acked, stored, delivered, sub_acked, sub_stored in rows:
        assert acked == stored == delivered, f"{fault}: acked={acked} stored={stored} delivered={delivered}"
        assert sub_acked == sub_stored, f"{fault}: submissions acked={sub_acked} stored={sub_stored}"
    for phase in load.phases:
        unary = {k: v for k, v in phase.errors.items() if not k.startswith("Connect:")}
        wrong = {k: v for k, v in unary.items() if not k.endswith(":UNAVAILABLE")}
        assert not wrong, f"{phase.name}: clients saw more than UNAVAILABLE: {wrong}"
    assert all(reader.resyncs == 0 for reader in load.readers), "a device was told to resync (events lost)"
