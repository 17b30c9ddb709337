"""Run a :class:`ProcessSpec` as a child process, and stop it cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mesh.deps.base import Dependency, ProcessSpec


async def launch(spec: ProcessSpec) -> asyncio.subprocess.Process:
    """Start ``spec`` in its own process group, output appended to its log file."""
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(spec.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        return await asyncio.create_subprocess_exec(
            *spec.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **spec.env},
            cwd=spec.cwd,
            start_new_session=True,
        )
    finally:
        log.close()


async def terminate(proc: asyncio.subprocess.Process, timeout_s: float) -> int:
    """SIGTERM the process group, SIGKILL it after ``timeout_s``; return the exit code."""
    if proc.returncode is not None:
        return proc.returncode
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        return await asyncio.wait_for(proc.wait(), timeout_s)
    except TimeoutError:
        _signal_group(proc.pid, signal.SIGKILL)
        return await proc.wait()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


@asynccontextmanager
async def running(dep: Dependency, ready_timeout_s: float = 120.0) -> AsyncIterator[Dependency]:
    """Prepare, launch and await ``dep``; stop it on exit. For tests and benchmarks."""
    await asyncio.to_thread(dep.prepare)
    spec = dep.spec()
    proc = await launch(spec)
    try:
        ready = asyncio.ensure_future(dep.wait_ready(ready_timeout_s))
        exited = asyncio.ensure_future(proc.wait())
        done, _ = await asyncio.wait({ready, exited}, return_when=asyncio.FIRST_COMPLETED)
        if exited in done:
            ready.cancel()
            raise RuntimeError(f"{spec.name} exited with {proc.returncode} before it was ready; see {spec.log_path}")
        exited.cancel()
        ready.result()
        yield dep
    finally:
        await terminate(proc, spec.stop_timeout_s)
