"""Live discovery: replicas register in NATS, the xDS control plane feeds Envoy, Envoy routes.

Real nats-server, real Envoy (bootstrapped to the control plane over ADS), the control
plane as ``python -m mesh.xds`` (so it can be SIGKILLed), and replicas that are real
servers of services/runtime/server.py. Each test uses a cluster name of its own: the
registry bucket is shared by the whole run.

Run as a program (``python -m tests.mesh.test_xds replica NAME NATS_URL``) this module is
a replica process, for the SIGKILL test.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import nats
from grpc_health.v1 import health_pb2
from pydantic_settings import SettingsConfigDict

from gateway.envoy import Envoy
from gateway.routes import RouteSpec
from gateway.settings import ClientRateLimits, GatewaySettings, HealthCheck, Upstream, XdsSource
from mesh.deps.base import free_port
from mesh.deps.nats import Nats, NatsConfig
from mesh.deps.process import running
from mesh.xds.probe import HostStats, cluster_hosts, wait_first_request
from services.runtime.bus import NatsSettings
from services.runtime.registry import BUCKET, ReplicaRecord
from services.runtime.server import ServiceBinding, ServiceServer, create_server
from services.runtime.settings import ServiceSettings

PACKAGE = "chatmesh.session.v1"
SERVICE = f"{PACKAGE}.SessionService"
SAFE = f"/{SERVICE}/SafeEcho"
UNSAFE = f"/{SERVICE}/UnsafeEcho"
REPO = Path(__file__).resolve().parents[2]

Request = health_pb2.HealthCheckRequest
Reply = health_pb2.HealthCheckResponse


class ReplicaSettings(ServiceSettings):
    """A test replica: the runtime's settings and a NATS, like every mesh service."""

    model_config = SettingsConfigDict(env_prefix="CHATMESH_TEST_REPLICA_", extra="ignore", frozen=True)

    nats: NatsSettings = NatsSettings()


class _EchoHandler(grpc.GenericRpcHandler):
    """SafeEcho and UnsafeEcho: echo the request's ``service`` as the reply's status, or fail."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.calls = 0

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        if handler_call_details.method not in (SAFE, UNSAFE):  # type: ignore[attr-defined]
            return None
        return grpc.unary_unary_rpc_method_handler(
            self._echo, request_deserializer=Request.FromString, response_serializer=Reply.SerializeToString
        )

    async def _echo(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        self.calls += 1
        if self.fail:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "this replica fails every call")
        return Reply(status=Reply.SERVING)


def build_replica(cluster: str, nats_url: str, *, fail: bool = False, **changes: Any) -> ServiceServer:
    """A replica of ``cluster`` on a free port that registers in the registry when started."""
    settings = ReplicaSettings(
        port=0,
        nats=NatsSettings(url=nats_url),
        replica=f"{cluster}-{uuid.uuid4().hex[:6]}",
        shutdown_drain_s=0.3,
        shutdown_grace_s=1.0,
        registry_ttl_s=1.5,
        registry_heartbeat_s=0.5,
        reflection=False,
        **changes,
    )
    handler = _EchoHandler(fail)
    binding = ServiceBinding(
        full_name=SERVICE,
        add_to_server=lambda servicer, server: server.add_generic_rpc_handlers([servicer]),
        servicer=handler,
        public_methods=(SAFE, UNSAFE),
    )
    return create_server(cluster, settings, [binding])


@dataclass
class Mesh:
    """The control plane process, Envoy in front of it, and how to reach both."""

    cluster: str
    nats_url: str
    xds_port: int
    envoy: Envoy
    start_control_plane: Callable[[], Awaitable[None]]
    kill_control_plane: Callable[[], Awaitable[None]]

    @property
    def admin_port(self) -> int:
        return self.envoy.settings.admin_port

    async def hosts(self) -> dict[str, HostStats]:
        """This test's cluster's hosts in Envoy, by ``ip:port``."""
        return (await cluster_hosts(self.admin_port)).get(self.cluster, {})

    async def wait_hosts(self, predicate: Callable[[dict[str, HostStats]], bool], timeout_s: float, what: str) -> float:
        """Poll Envoy's /clusters until ``predicate`` holds; return the seconds it took."""
        started = time.monotonic()
        while True:
            hosts = await self.hosts()
            if predicate(hosts):
                return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                raise AssertionError(f"{what} not within {timeout_s}s; Envoy has {hosts}")
            await asyncio.sleep(0.02)

    async def call(self, path: str) -> grpc.StatusCode:
        """One unary call through the gateway; its status code."""
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.envoy.settings.port}") as channel:
            method = channel.unary_unary(
                path, request_serializer=Request.SerializeToString, response_deserializer=Reply.FromString
            )
            try:
                await method(Request(service="x"), timeout=5)
            except grpc.aio.AioRpcError as exc:
                return exc.code()
        return grpc.StatusCode.OK


def address(replica: ServiceServer) -> str:
    return f"127.0.0.1:{replica.port}"


def healthy(replica: ServiceServer) -> Callable[[dict[str, HostStats]], bool]:
    return lambda hosts: address(replica) in hosts and hosts[address(replica)].healthy


def absent(replica: ServiceServer) -> Callable[[dict[str, HostStats]], bool]:
    return lambda hosts: address(replica) not in hosts


async def _launch_control_plane(cluster: str, nats_url: str, port: int, log_path: Path) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}:{REPO / 'gen' / 'python'}",
        "CHATMESH_XDS_PORT": str(port),
        "CHATMESH_XDS_NATS__URL": nats_url,
        "CHATMESH_XDS_SERVICES": f'["{cluster}"]',
        "CHATMESH_XDS_HEALTH_CHECK__INTERVAL_S": "0.5",
        "CHATMESH_XDS_LOG_LEVEL": "info",
    }
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mesh.xds", env=env, stdout=log, stderr=asyncio.subprocess.STDOUT, cwd=REPO
        )
    finally:
        log.close()
    await _wait_serving(f"127.0.0.1:{port}", proc, log_path)
    return proc


async def _wait_serving(target: str, proc: asyncio.subprocess.Process, log_path: Path) -> None:
    from grpc_health.v1 import health_pb2_grpc

    deadline = time.monotonic() + 30
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if proc.returncode is not None:
                raise RuntimeError(f"the control plane exited: {log_path.read_text()[-2000:]}")
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"control plane not SERVING: {log_path.read_text()[-2000:]}")
            await asyncio.sleep(0.1)


@asynccontextmanager
async def mesh_for(nats_server: Nats, tmp_path: Path) -> AsyncIterator[Mesh]:
    """A control plane process and an Envoy bootstrapped to it, for a cluster of this test's own."""
    cluster = f"echo-{uuid.uuid4().hex[:8]}"
    xds_port = free_port()
    procs: list[asyncio.subprocess.Process] = []

    async def start() -> None:
        procs.append(await _launch_control_plane(cluster, nats_server.url, xds_port, tmp_path / "xds.log"))

    async def kill() -> None:
        proc = procs.pop()
        proc.send_signal(signal.SIGKILL)
        await proc.wait()

    await start()
    try:
        port, admin_port = free_port(), free_port()
        settings = GatewaySettings(
            port=port,
            admin_port=admin_port,
            upstreams=[Upstream(name=cluster, port=1, package=PACKAGE)],
            catalog=Upstream(name="catalog", port=free_port()),
            health_check=HealthCheck(interval_s=0.5),
            # Every call here is anonymous from one address: no per-client bucket in the way.
            client_rate_limits=ClientRateLimits(enabled=False),
            xds=XdsSource(port=xds_port, initial_fetch_timeout_s=10),
        )
        routes = [RouteSpec(package=PACKAGE, cluster=cluster, public_methods=[SAFE, UNSAFE], retry_safe_methods=[SAFE])]
        envoy = Envoy(settings, routes, tmp_path / "envoy")
        async with running(envoy, ready_timeout_s=30.0):
            yield Mesh(cluster, nats_server.url, xds_port, envoy, start, kill)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()


async def test_a_started_replica_is_routed_within_a_second_of_serving(nats_server: Nats, tmp_path: Path) -> None:
    async with mesh_for(nats_server, tmp_path) as mesh:
        replica = build_replica(mesh.cluster, mesh.nats_url)
        await replica.start()
        try:
            took = await mesh.wait_hosts(healthy(replica), 1.0, "the new replica healthy in Envoy")
            print(f"serving_to_healthy_in_envoy_ms={took * 1000:.0f}")
            assert took < 1.0
            assert await mesh.call(SAFE) == grpc.StatusCode.OK
            # The benchmark's probe sees that first call reach the replica.
            routed = await wait_first_request(mesh.admin_port, mesh.cluster, address(replica), timeout_s=2.0)
            assert routed <= time.monotonic()
        finally:
            await replica.stop()


async def test_a_stopped_replica_leaves_within_a_second(nats_server: Nats, tmp_path: Path) -> None:
    async with mesh_for(nats_server, tmp_path) as mesh:
        staying = build_replica(mesh.cluster, mesh.nats_url)
        leaving = build_replica(mesh.cluster, mesh.nats_url)
        await staying.start()
        await leaving.start()
        try:
            await mesh.wait_hosts(lambda h: healthy(staying)(h) and healthy(leaving)(h), 2.0, "both replicas")
            stopping = asyncio.create_task(leaving.stop())
            # Draining: Envoy stops sending it new calls well before it stops taking them.
            await mesh.wait_hosts(lambda h: not healthy(leaving)(h), 0.3, "the draining replica out of rotation")
            await stopping
            took = await mesh.wait_hosts(absent(leaving), 1.0, "the stopped replica gone from Envoy")
            print(f"stopped_to_gone_from_envoy_ms={took * 1000:.0f}")
            assert took < 1.0
            codes = [await mesh.call(UNSAFE) for _ in range(10)]
            assert codes == [grpc.StatusCode.OK] * 10
        finally:
            await staying.stop()


async def test_a_sigkilled_replica_leaves_within_its_ttl(nats_server: Nats, tmp_path: Path) -> None:
    async with mesh_for(nats_server, tmp_path) as mesh:
        env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'gen' / 'python'}"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.mesh.test_xds",
            "replica",
            mesh.cluster,
            mesh.nats_url,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            cwd=REPO,
        )
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            target = f"127.0.0.1:{int(line)}"
            await mesh.wait_hosts(lambda h: target in h and h[target].healthy, 2.0, "the replica process")
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            took = await mesh.wait_hosts(lambda h: target not in h, 1.5 + 1.0, "the killed replica gone")
            print(f"sigkill_to_gone_from_envoy_ms={took * 1000:.0f} ttl_ms=1500")
            assert took <= 2.5
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_envoy_keeps_routing_without_the_control_plane_and_catches_up_when_it_returns(
    nats_server: Nats, tmp_path: Path
) -> None:
    async with mesh_for(nats_server, tmp_path) as mesh:
        first = build_replica(mesh.cluster, mesh.nats_url)
        await first.start()
        added = build_replica(mesh.cluster, mesh.nats_url)
        try:
            await mesh.wait_hosts(healthy(first), 2.0, "the first replica")
            await mesh.kill_control_plane()
            codes = [await mesh.call(UNSAFE) for _ in range(30)]
            assert codes == [grpc.StatusCode.OK] * 30
            await added.start()
            await asyncio.sleep(1.0)
            assert address(added) not in await mesh.hosts()  # nobody told Envoy yet
            codes = [await mesh.call(UNSAFE) for _ in range(10)]
            assert codes == [grpc.StatusCode.OK] * 10
            await mesh.start_control_plane()
            took = await mesh.wait_hosts(
                lambda h: healthy(first)(h) and healthy(added)(h), 10.0, "the replica added meanwhile"
            )
            print(f"control_plane_back_to_added_replica_healthy_ms={took * 1000:.0f}")
            assert [await mesh.call(UNSAFE) for _ in range(10)] == [grpc.StatusCode.OK] * 10
        finally:
            await added.stop()
            await first.stop()


async def test_a_retry_safe_call_is_retried_on_another_replica_and_an_unsafe_one_is_not(
    nats_server: Nats, tmp_path: Path
) -> None:
    async with mesh_for(nats_server, tmp_path) as mesh:
        failing = build_replica(mesh.cluster, mesh.nats_url, fail=True)
        working = build_replica(mesh.cluster, mesh.nats_url)
        await failing.start()
        await working.start()
        try:
            await mesh.wait_hosts(lambda h: healthy(failing)(h) and healthy(working)(h), 2.0, "both replicas")
            safe = [await mesh.call(SAFE) for _ in range(20)]
            # Envoy did send safe calls to the failing replica: each was retried on the other.
            met_failing = (await mesh.hosts())[address(failing)].rq_total
            unsafe = [await mesh.call(UNSAFE) for _ in range(20)]
        finally:
            await failing.stop()
            await working.stop()
    assert met_failing > 0
    assert safe == [grpc.StatusCode.OK] * 20
    assert grpc.StatusCode.UNAVAILABLE in unsafe  # not retried: the failing replica's answer reaches the caller


async def test_a_replica_serves_without_nats_and_registers_once_nats_is_up(tmp_path: Path) -> None:
    port = free_port()
    replica = build_replica(f"echo-{uuid.uuid4().hex[:8]}", f"nats://127.0.0.1:{port}")
    started = time.monotonic()
    await replica.start()
    try:
        assert time.monotonic() - started < 6  # one failed connect, not a hang
        assert replica.registration is None
        async with grpc.aio.insecure_channel(address(replica)) as channel:
            echo = channel.unary_unary(SAFE, Request.SerializeToString, Reply.FromString)
            assert (await echo(Request(), timeout=5)).status == Reply.SERVING
        async with running(Nats(NatsConfig(home=tmp_path / "nats", port=port)), ready_timeout_s=30):
            deadline = time.monotonic() + 10
            while replica.registration is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert replica.registration is not None
            nc = await nats.connect(f"nats://127.0.0.1:{port}")
            try:
                kv = await nc.jetstream().key_value(BUCKET)
                entry = await kv.get(replica.registration.record.key)
                assert entry.value is not None
                assert ReplicaRecord.model_validate_json(entry.value).port == replica.port
            finally:
                await nc.close()
            await replica.stop()
    finally:
        if replica.registration is not None:
            await replica.stop()


async def _replica_main(cluster: str, nats_url: str) -> None:
    replica = build_replica(cluster, nats_url)
    await replica.start()
    print(replica.port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__" and sys.argv[1:2] == ["replica"]:
    asyncio.run(_replica_main(sys.argv[2], sys.argv[3]))
