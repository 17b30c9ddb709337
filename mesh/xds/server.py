"""Building and running the control plane: an ADS server, gRPC health, and a replica source.

``create`` builds (tests call it on port 0 in-process); ``run`` is ``python -m mesh.xds``.
Health ("" and the ADS service) turns SERVING once the source has loaded its replicas,
so a supervisor that waits for it starts Envoy on a complete first configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from mesh.xds.ads import SERVICE, AdsServer, SnapshotCache
from mesh.xds.kubernetes import EndpointSliceSource
from mesh.xds.resources import Snapshot, build_snapshot, health_service_of
from mesh.xds.settings import XdsSettings
from services.runtime.bus import connect
from services.runtime.errors import ChatmeshError
from services.runtime.logs import configure_logging
from services.runtime.registry import RegistryView, ReplicaTable
from services.runtime.settings import load_settings
from services.runtime.tasks import cancel_and_wait

log = logging.getLogger("chatmesh.xds")


@dataclass
class ControlPlane:
    """A built control plane: its server, port, replica table and ADS servicer."""

    settings: XdsSettings
    server: grpc.aio.Server
    port: int
    table: ReplicaTable
    ads: AdsServer
    health: health.aio.HealthServicer
    _source: Any = None
    _nats: Any = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        """Serve, start following the source, and say SERVING once it has loaded."""
        await self.server.start()
        await self._start_source()
        self._tasks.append(asyncio.create_task(self._serving_when_ready(), name="xds-ready"))
        log.info("serving", extra={"port": self.port, "source": self.settings.source})

    async def _start_source(self) -> None:
        if self.settings.source == "kubernetes":
            source = EndpointSliceSource(self.settings.namespace, self.settings.kubernetes_port_name, self.table)
            source.start()
            self._source = source
            return
        while self._nats is None:
            try:
                self._nats = await connect(self.settings.nats, "xds")
            except ChatmeshError:
                log.warning("NATS unreachable; the registry is followed once it is")
                await asyncio.sleep(1.0)
        view = RegistryView(self._nats, self.table, sweep_interval_s=self.settings.sweep_interval_s)
        view.start()
        self._source = view

    async def _serving_when_ready(self) -> None:
        while not self.table.ready:
            await self.table.wait_changed(self.table.version, timeout_s=1.0)
        for name in ("", SERVICE):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("replicas loaded", extra={"replicas": len(self.table.records())})

    async def stop(self, grace_s: float = 1.0) -> None:
        """Stop serving (Envoy keeps its configuration) and stop following the source."""
        await cancel_and_wait(self._tasks)
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)
        if self._source is not None:
            await self._source.close()
        if self._nats is not None:
            with contextlib.suppress(Exception):
                await self._nats.close()


def create(settings: XdsSettings, table: ReplicaTable | None = None) -> ControlPlane:
    """Build the control plane for ``settings`` (nothing runs until :meth:`ControlPlane.start`)."""
    table = table or ReplicaTable()
    clusters = {name: health_service_of(name) for name in settings.cluster_names()}

    def build(current: ReplicaTable) -> Snapshot:
        return build_snapshot(settings, clusters, current.by_service())

    ads = AdsServer(SnapshotCache(table, build))
    # Build once now: a cluster Envoy would refuse fails the start, not the first Envoy.
    build(table)
    server = grpc.aio.server(
        options=[
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.so_reuseport", 0),
        ]
    )
    server.add_generic_rpc_handlers([ads.handler()])
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    if port == 0:
        raise RuntimeError(f"could not bind {settings.host}:{settings.port}")
    return ControlPlane(settings, server, port, table, ads, health_servicer)


async def serve(settings: XdsSettings) -> None:
    """Run until SIGTERM or SIGINT."""
    plane = create(settings)
    await plane.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    await plane.stop()


def run() -> None:
    """``python -m mesh.xds``: settings from CHATMESH_XDS_*, JSON logs, serve until SIGTERM."""
    settings = load_settings(XdsSettings)
    configure_logging("xds", settings.log_level)
    asyncio.run(serve(settings))
