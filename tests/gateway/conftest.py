"""Fixtures for the gateway tests: a tiny gRPC upstream and Envoy in front of it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from gateway.envoy import Envoy
from gateway.routes import RouteSpec
from gateway.settings import GatewaySettings, HealthCheck, Upstream
from mesh.deps.base import free_port
from mesh.deps.process import running

SESSION_SERVICE = "chatmesh.session.v1.SessionService"
SESSION_PACKAGE = "chatmesh.session.v1"
#: A client-streaming method of the tiny upstream: answers the number of bytes it got.
UPLOAD = f"/{SESSION_SERVICE}/Upload"

GatewayFactory = Callable[..., AbstractAsyncContextManager[Envoy]]


@dataclass(frozen=True)
class TinyUpstream:
    """The test's gRPC server: its port, and its health servicer to change statuses with."""

    port: int
    health: health_aio.HealthServicer


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[TinyUpstream]:
    """A grpc.aio server with Health (SessionService SERVING) and reflection, on a free port."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([_UploadHandler()])
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    await health.set(SESSION_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    names = [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield TinyUpstream(port, health)
    finally:
        await server.stop(None)


async def _upload(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    # As the mesh's client-streaming servicers do: response headers before reading anything.
    if dict(context.invocation_metadata() or ()).get("x-early-headers") == "1":
        await context.send_initial_metadata(())
    size = 0
    async for chunk in requests:
        size += len(chunk)
    return str(size).encode()


class _UploadHandler(grpc.GenericRpcHandler):
    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        if handler_call_details.method != UPLOAD:  # type: ignore[attr-defined]
            return None
        return grpc.stream_unary_rpc_method_handler(_upload)


def gateway_settings(upstream: int, **changes: Any) -> GatewaySettings:
    """Settings on free ports, with ``upstream`` serving chatmesh.session.v1 and the catalog."""
    port = free_port()
    admin_port = free_port()
    while admin_port == port:
        admin_port = free_port()
    values: dict[str, Any] = {
        "port": port,
        "admin_port": admin_port,
        "upstreams": [Upstream(name="session", port=upstream, package=SESSION_PACKAGE, health_service=SESSION_SERVICE)],
        "catalog": Upstream(name="catalog", port=upstream),
        "health_check": HealthCheck(interval_s=0.5),
        **changes,
    }
    return GatewaySettings(**values)


@pytest.fixture
def gateway(upstream: TinyUpstream, tmp_path: Path) -> GatewayFactory:
    """Start Envoy in front of ``upstream_port``; keyword arguments change its settings."""

    @asynccontextmanager
    async def start(routes: list[RouteSpec] | None = None, **changes: Any) -> AsyncIterator[Envoy]:
        settings = gateway_settings(upstream.port, **changes)
        envoy = Envoy(settings, routes or [], tmp_path / f"envoy-{settings.port}")
        async with running(envoy, ready_timeout_s=30.0):
            yield envoy

    return start
