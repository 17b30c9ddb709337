"""What every dependency process looks like to the supervisor and to test fixtures.

A dependency is prepared (installed, configured: blocking, idempotent), then launched
from its :class:`ProcessSpec` in the foreground, then awaited until it answers.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class ProcessSpec:
    """How to launch one process in the foreground.

    Attributes:
        name: short name used in logs and pid files (``nats``, ``cassandra``...).
        argv: the command line.
        env: extra environment variables, added to the parent's.
        cwd: working directory, or None for the current one.
        log_path: file that receives the process's stdout and stderr.
        stop_timeout_s: seconds between SIGTERM and SIGKILL on stop.
    """

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    stop_timeout_s: float = 10.0


class Dependency(Protocol):
    """A real server the mesh needs (NATS, Cassandra, Envoy)."""

    name: str

    def prepare(self) -> None:
        """Install what is missing and write configuration. Blocking, idempotent."""

    def spec(self) -> ProcessSpec:
        """The foreground command that runs the server."""

    async def wait_ready(self, timeout_s: float) -> None:
        """Return once the server answers; raise TimeoutError after ``timeout_s``."""


_handed_out: set[int] = set()


def reserve_ports(ports: Iterable[int]) -> None:
    """Ports :func:`free_port` must never hand out (configured ports of processes not started yet)."""
    _handed_out.update(ports)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (for tests and benchmarks), never the same twice.

    Drawn below the kernel's ephemeral range (32768 and up), unlike ``bind(0)``: a port
    from that range can be taken by some outgoing connection (a CQL client's, say) before
    the server it was meant for binds it.
    """
    for _ in range(1000):
        port = random.randrange(20_000, 32_000)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free TCP port between 20000 and 32000")


async def wait_tcp(host: str, port: int, timeout_s: float) -> None:
    """Wait until something accepts TCP connections on ``host:port``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            if loop.time() > deadline:
                raise TimeoutError(f"{host}:{port} did not accept connections in {timeout_s}s") from None
            await asyncio.sleep(0.1)
        else:
            writer.close()
            await writer.wait_closed()
            return
