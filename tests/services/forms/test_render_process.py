"""The sheets consumer's render process: the same files as rendering in place, and it ends with its worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from chatmesh.forms.v1 import forms_pb2 as fpb
from services.forms.sheetrender import RENDER_NICENESS, Column, Row, render_csv, render_files, render_pool

ROOT = Path(__file__).resolve().parents[3]

# A stand-in for a worker: starts the render process as the sheets consumer does, says its pid, waits.
WORKER = """
import os, sys, time
from services.forms.sheetrender import render_pool
pool = render_pool()
print(pool.submit(os.getpid).result(), flush=True)
time.sleep(600)
"""


def _rows(n: int) -> list[Row]:
    return [
        Row(
            submission_id=f"sub-{i:05d}",
            created_ms=1_764_000_000_000 + i,
            form_version=1,
            submitter_user_id="user-1",
            values={"name": f"name {i}", "age": float(i), "tags": ["a", "b"]},
        )
        for i in range(n)
    ]


def test_the_render_process_writes_what_rendering_in_place_writes() -> None:
    columns = [
        Column("name", "Name", fpb.FIELD_TYPE_TEXT),
        Column("age", "Age", fpb.FIELD_TYPE_NUMBER),
        Column("tags", "Tags", fpb.FIELD_TYPE_TEXT),
    ]
    rows = _rows(2_000)
    pool = render_pool()
    try:
        files = pool.submit(render_files, "Sign-ups", columns, rows, ("xlsx", "csv")).result(timeout=60)
        csv_only = pool.submit(render_files, "Sign-ups", columns, rows, ("csv",)).result(timeout=60)
    finally:
        pool.shutdown()
    assert files["csv"] == render_csv(columns, rows)
    assert files["xlsx"][:2] == b"PK" and len(files["xlsx"]) > 10_000  # a zip: a workbook with the rows
    assert set(csv_only) == {"csv"}


def test_the_render_process_yields_the_cpu_to_its_worker() -> None:
    pool = render_pool()
    try:
        theirs = pool.submit(os.getpriority, os.PRIO_PROCESS, 0).result(timeout=60)
    finally:
        pool.shutdown()
    assert theirs == min(19, os.getpriority(os.PRIO_PROCESS, 0) + RENDER_NICENESS)  # 19: the lowest


def test_the_render_process_ends_when_its_worker_is_killed() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen" / "python")])}
    worker = subprocess.Popen([sys.executable, "-c", WORKER], stdout=subprocess.PIPE, env=env, cwd=ROOT, text=True)
    try:
        assert worker.stdout is not None
        child = int(worker.stdout.readline())
        assert child != worker.pid and _alive(child)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        deadline = time.monotonic() + 15
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child), "the render process outlived its SIGKILLed worker"
    finally:
        worker.kill()
        worker.wait()
        if worker.stdout is not None:
            worker.stdout.close()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended and not yet reaped by init, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"
