"""The Kubernetes gateway's bootstrap, run by a real Envoy on loopback.

Only addresses change (free ports, 127.0.0.1 for the Services' names, a JWKS file here): the
listener, filters, routes and the ADS wiring are the committed file's. Without a control
plane the gateway keeps its listener closed, so its readiness probe fails and it takes no
traffic; once the service clusters arrive (here from a CDS file, as the control plane would
send them), a public call reaches its service, an internal one is refused at the edge, and
the catalog answers health checks.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from deploy.k8s import render_gateway
from gateway.edge import jwks
from gateway.envoy import find_envoy
from gateway.settings import EdgeAuth
from mesh.contracts import load_all
from mesh.deps.base import ProcessSpec, free_port
from mesh.deps.process import launch, terminate
from services.runtime.tokens import generate_key_pair

_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[int]:
    """A gRPC server standing in for every service: health SERVING, every method UNIMPLEMENTED."""
    server = grpc.aio.server()
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(None)


def _static(name: str, port: int, http2: bool = True) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
                    ]
                }
            ],
        },
    }
    if http2:
        cluster["typed_extension_protocol_options"] = {
            _HTTP_OPTIONS: {
                "@type": f"type.googleapis.com/{_HTTP_OPTIONS}",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return cluster


def _local_bootstrap(tmp_path: Path, upstream: int, listen: int, admin: int) -> dict[str, Any]:
    """The committed bootstrap on loopback: same listener and routes, local addresses."""
    config: dict[str, Any] = yaml.safe_load(render_gateway.BOOTSTRAP.read_text(encoding="utf-8"))
    generate_key_pair(tmp_path / "a.pem", tmp_path / "a.pub.pem")
    generate_key_pair(tmp_path / "s.pem", tmp_path / "s.pub.pem")
    auth = EdgeAuth(
        access_token_public_key_file=tmp_path / "a.pub.pem", service_token_public_key_file=tmp_path / "s.pub.pem"
    )
    (tmp_path / "jwks.json").write_text(json.dumps(jwks(auth)), encoding="utf-8")
    text = yaml.safe_dump(config).replace(render_gateway.JWKS_FILE, str(tmp_path / "jwks.json"))
    config = yaml.safe_load(text)
    config["admin"]["address"]["socket_address"]["port_value"] = admin
    (listener,) = config["static_resources"]["listeners"]
    listener["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": listen}
    web = free_port()  # nothing listens: the static site is not part of this test
    config["static_resources"]["clusters"] = [
        _static("catalog", upstream),
        _static("web", web, http2=False),
        _static(render_gateway.XDS_CLUSTER, free_port()),  # the control plane is down
    ]
    return config


async def _run_envoy(tmp_path: Path, config: dict[str, Any], name: str) -> asyncio.subprocess.Process:
    path = tmp_path / f"{name}-bootstrap.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    argv = [str(find_envoy()), "-c", str(path), "--service-node", name, "--service-cluster", "chatmesh-gateway"]
    argv += ["--disable-hot-restart", "--concurrency", "1", "--log-level", "warn"]
    return await launch(ProcessSpec(name=name, argv=argv, log_path=tmp_path / f"{name}.log"))


async def _call(channel: grpc.aio.Channel, path: str) -> bytes:
    """An empty request to ``path`` (raw bytes: only the status matters here)."""
    method: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(path)
    return await method(b"", timeout=5)


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def _wait_accepts(port: int, timeout_s: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if _accepts(port):
            return True
        await asyncio.sleep(0.1)
    return False


async def test_gateway_stays_closed_without_the_control_plane(tmp_path: Path, upstream: int) -> None:
    listen, admin = free_port(), free_port()
    envoy = await _run_envoy(tmp_path, _local_bootstrap(tmp_path, upstream, listen, admin), "no-xds")
    try:
        assert await _wait_accepts(admin, 30), (tmp_path / "no-xds.log").read_text()  # Envoy runs...
        await asyncio.sleep(3)
        assert envoy.returncode is None
        assert not _accepts(listen)  # ...but its listener, which the readiness probe checks, stays shut
    finally:
        await terminate(envoy, 5.0)


async def test_gateway_routes_to_the_clusters_the_control_plane_sends(tmp_path: Path, upstream: int) -> None:
    listen, admin = free_port(), free_port()
    config = _local_bootstrap(tmp_path, upstream, listen, admin)
    resources = [
        {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", **_static(c.name, upstream)}
        for c in load_all()
    ]
    cds = tmp_path / "cds.yaml"
    cds.write_text(yaml.safe_dump({"resources": resources}), encoding="utf-8")
    config["dynamic_resources"] = {
        "cds_config": {"path_config_source": {"path": str(cds)}, "resource_api_version": "V3"}
    }
    envoy = await _run_envoy(tmp_path, config, "cds")
    try:
        assert await _wait_accepts(listen, 30), (tmp_path / "cds.log").read_text()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{listen}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING  # the catalog, a static cluster
            with pytest.raises(grpc.aio.AioRpcError) as reached:
                await _call(channel, "/chatmesh.session.v1.SessionService/Login")
            # UNIMPLEMENTED comes from the stand-in service: the call crossed Envoy to the session cluster.
            assert reached.value.code() == grpc.StatusCode.UNIMPLEMENTED, reached.value.details()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _call(channel, "/chatmesh.history.v1.HistoryService/AppendAssistantMessage")
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            with pytest.raises(grpc.aio.AioRpcError) as anonymous:
                await _call(channel, "/chatmesh.history.v1.HistoryService/ListConversations")
            assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED  # edge JWT check, JWKS from the file
    finally:
        await terminate(envoy, 5.0)
