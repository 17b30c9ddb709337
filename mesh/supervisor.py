"""The local supervisor behind `make up`.

Starts, in order: NATS and Cassandra (together; with ``CHATMESH_MESH_NATS_NODES=3`` and
``CHATMESH_MESH_CASSANDRA_NODES=3`` every NATS node and the Cassandra seed, then the other
Cassandra nodes, on 127.0.0.1-3), the six services, the catalog and the
static server of the browser client (together), the services' worker processes, then the
Envoy gateway; waits for each to be healthy; prints the gateway
address; restarts any process that dies (with back-off, each process on its own); on
SIGINT/SIGTERM stops everything in reverse order and leaves no process behind.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.envoy import Envoy
from gateway.routes import RouteSpec
from gateway.settings import EdgeAuth, GatewaySettings, StaticSite, Upstream, XdsSource
from mesh.contracts import ServiceContract, load_all, route_specs
from mesh.control import CONTROL_SOCKET
from mesh.deps.base import Dependency, ProcessSpec, free_port, reserve_ports
from mesh.deps.cassandra import Cassandra, CassandraConfig
from mesh.deps.nats import Nats, NatsConfig
from mesh.deps.process import launch, terminate
from mesh.settings import MeshSettings
from services.runtime.tasks import cancel_and_wait
from services.runtime.tokens import generate_key_pair

log = logging.getLogger("chatmesh.mesh")

ROOT = Path(__file__).resolve().parent.parent
CATALOG = "catalog"
WEB = "web"
XDS = "xds"


@dataclass(frozen=True)
class WorkerKind:
    """Worker processes of a service: ``python -m <module>``, ``count_setting`` of them.

    Each gets its service's environment (``CHATMESH_<SERVICE>_*``: NATS, CQL, keys, peers),
    its own metrics port in ``CHATMESH_<SERVICE>_METRICS_PORT`` (ready once ``/metrics``
    answers) and its name in ``CHATMESH_<SERVICE>_WORKER_NAME`` (``ingest-worker-2``).
    """

    service: str
    module: str
    count_setting: str


#: The services' worker processes, started after the services (they call them).
WORKERS: tuple[WorkerKind, ...] = (
    WorkerKind("ingest", "services.ingest.worker", "ingest_workers"),
    WorkerKind("forms", "services.forms.worker", "forms_workers"),
)


@dataclass(frozen=True)
class Replica:
    """One replica of a service: its process name (``history``, or ``history-2`` of several) and ports."""

    service: str
    name: str
    port: int
    metrics_port: int


@dataclass
class Managed:
    """One process the supervisor owns."""

    name: str
    spec: ProcessSpec
    wait_ready: Callable[[float], Awaitable[None]]
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = field(default=0.0)
    replica: Replica | None = None
    restart_request: asyncio.Future[None] | None = None
    """Set by a planned restart (``restart --rolling``): the watcher starts it again at once."""
    retired: bool = False
    """Stopped for good by a scale-down: the watcher lets it go."""


async def wait_grpc_serving(target: str, service: str, timeout_s: float) -> None:
    """Wait until ``target``'s gRPC health says ``service`` is SERVING (health's Watch: told the moment it is)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                async with asyncio.timeout(max(0.1, deadline - loop.time())):
                    async for reply in stub.Watch(health_pb2.HealthCheckRequest(service=service)):
                        if reply.status == health_pb2.HealthCheckResponse.SERVING:
                            return
            except grpc.aio.AioRpcError:
                pass
            except TimeoutError:
                pass
            if loop.time() > deadline:
                raise TimeoutError(f"{service} at {target} not SERVING after {timeout_s}s")
            await asyncio.sleep(0.05)


async def wait_gateway_clusters(admin_url: str, clusters: list[str], timeout_s: float) -> None:
    """Wait until Envoy's health checks mark every upstream cluster healthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            text = await asyncio.to_thread(_get, f"{admin_url}/clusters")
            healthy = {line.split("::")[0] for line in text.splitlines() if line.endswith("health_flags::healthy")}
            if set(clusters) <= healthy:
                return
        except OSError:
            pass
        if loop.time() > deadline:
            raise TimeoutError(f"gateway upstreams not healthy after {timeout_s}s")
        await asyncio.sleep(0.2)


async def wait_http_ok(url: str, timeout_s: float) -> None:
    """Wait until ``url`` answers 200."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            await asyncio.to_thread(_get, url)
            return
        except OSError:
            pass
        if loop.time() > deadline:
            raise TimeoutError(f"{url} did not answer 200 in {timeout_s}s")
        await asyncio.sleep(0.1)


async def wait_gateway_host(admin_url: str, cluster: str, address: str, timeout_s: float) -> None:
    """Wait until Envoy's ``cluster`` has the host ``address`` (``ip:port``) and marks it healthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    wanted = f"{cluster}::{address}::health_flags::healthy"
    while True:
        try:
            text = await asyncio.to_thread(_get, f"{admin_url}/clusters")
            if wanted in text.splitlines():
                return
        except OSError:
            pass
        if loop.time() > deadline:
            raise TimeoutError(f"the gateway does not route to {address} ({cluster}) after {timeout_s}s")
        await asyncio.sleep(0.05)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback admin URL we built
        return str(response.read().decode())


class Supervisor:
    """Runs the whole mesh on loopback."""

    def __init__(self, settings: MeshSettings) -> None:
        self.settings = settings
        self.contracts = load_all()
        self._stopping = asyncio.Event()
        self._groups: list[list[Managed]] = []
        # The configured ports: the free ones picked below (web, extra replicas) must not be one of them.
        reserve_ports(settings.configured_ports())
        # Picked once, so a restarted static server comes back where Envoy expects it.
        self.web_port = settings.web_port or free_port(settings.host)
        self.replicas = self._plan_replicas()
        self._by_name: dict[str, Managed] = {}
        self._watchers: list[asyncio.Future[None]] = []

    def _plan_replicas(self) -> dict[str, list[Replica]]:
        """Each service's replicas: the first on the service's base ports, the others on free ports."""
        s = self.settings
        names = [c.name for c in self.contracts]
        unknown = set(s.replica_counts) - set(names)
        if unknown:
            raise ValueError(f"replicas: unknown service {', '.join(sorted(unknown))} (one of {', '.join(names)})")
        if s.replica_count("ingest") > 1 and not os.environ.get("CHATMESH_INGEST_QDRANT_URL"):
            raise ValueError(
                "replicas: ingest=N needs a Qdrant server (CHATMESH_INGEST_QDRANT_URL): the embedded store "
                "has one owner, the ingest service"
            )
        plan: dict[str, list[Replica]] = {}
        for index, name in enumerate(names):
            count = s.replica_count(name)
            plan[name] = [
                Replica(
                    service=name,
                    name=name if count == 1 else f"{name}-{number}",
                    port=s.service_base_port + index if number == 1 else free_port(s.host),
                    metrics_port=s.metrics_base_port + index if number == 1 else free_port(s.host),
                )
                for number in range(1, count + 1)
            ]
        return plan

    def target(self, service: str) -> str:
        """The gRPC target of ``service`` for its peers: one address, or every replica's (``ipv4:a:p,a:q``)."""
        host = self.settings.host
        ports = [r.port for r in self.replicas[service]]
        if len(ports) == 1:
            return f"{host}:{ports[0]}"
        return "ipv4:" + ",".join(f"{host}:{port}" for port in ports)

    # -- building the plan --------------------------------------------------------

    def _service_port(self, index: int) -> int:
        return self.settings.service_base_port + index

    def _service_env(self, name: str, index: int) -> dict[str, str]:
        s = self.settings
        prefix = f"CHATMESH_{name.upper()}_"
        env = {
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen" / "python")]),
            "PYTHONUNBUFFERED": "1",
            f"{prefix}HOST": s.host,
            f"{prefix}PORT": str(self._service_port(index) if index >= 0 else s.catalog_port),
            f"{prefix}METRICS_PORT": str(s.metrics_base_port + index if index >= 0 else 0),
            f"{prefix}TOKEN_PUBLIC_KEY_FILE": str((s.key_dir / "access_token.pub.pem").resolve()),
            f"{prefix}SERVICE_TOKEN_PUBLIC_KEY_FILE": str((s.key_dir / "service_token.pub.pem").resolve()),
            f"{prefix}NATS__URL": ",".join(f"nats://{s.node_host(i)}:{s.nats_port}" for i in range(s.nats_nodes)),
            f"{prefix}NATS__STREAM_REPLICAS": str(s.nats_nodes),
            f"{prefix}CQL__HOSTS": json.dumps([s.node_host(i) for i in range(s.cassandra_nodes)]),
            f"{prefix}CQL__PORT": str(s.cql_port),
            f"{prefix}CQL__REPLICATION_FACTOR": str(s.cassandra_nodes),
        }
        if name == "session":
            env[f"{prefix}SIGNING_KEY_FILE"] = str((s.key_dir / "access_token.pem").resolve())
        # SetTyping checks membership, Reply reads and stores history, Connect follows only contacts' presence
        if name in ("presence", "inference", "session"):
            env[f"{prefix}HISTORY_TARGET"] = self.target("history")
        if name == "history":  # CreateConversation asks session's LookupUsers whether the peer is an account
            env[f"{prefix}SESSION_TARGET"] = self.target("session")
        if name == "inference":  # stores replies through history's internal AppendAssistantMessage
            env[f"{prefix}SERVICE_TOKEN_PRIVATE_KEY_FILE"] = str((s.key_dir / "service_token.pem").resolve())
            env[f"{prefix}INGEST_TARGET"] = self.target("ingest")  # grounded replies search as the caller
        if name == "ingest":  # workers act for jobs' owners: service tokens, Embed, Upsert to the service
            ingest_dir = (s.state_dir / "ingest").resolve()
            env[f"{prefix}SERVICE_TOKEN_PRIVATE_KEY_FILE"] = str((s.key_dir / "service_token.pem").resolve())
            env[f"{prefix}INFERENCE_TARGET"] = self.target("inference")
            env[f"{prefix}INGEST_TARGET"] = self.target("ingest")
            env[f"{prefix}DATA_DIR"] = str(ingest_dir)
            env[f"{prefix}IMPORT_ROOT"] = str(ingest_dir / "import")
            env[f"{prefix}SNAPSHOT_ROOT"] = str(ingest_dir / "snapshots")
            env[f"{prefix}MAX_RECEIVE_MESSAGE_BYTES"] = str(s.ingest_max_request_bytes)
        if name == "forms":  # the sheets consumer's spreadsheets live with the mesh's other state
            env[f"{prefix}SHEETS__DIRECTORY"] = str((s.state_dir / "sheets").resolve())

        return env

    def _python(
        self,
        name: str,
        module: str,
        index: int,
        ready: Callable[[float], Awaitable[None]],
        env: dict[str, str] | None = None,
    ) -> Managed:
        spec = ProcessSpec(
            name=name,
            argv=[sys.executable, "-m", module],
            env=env if env is not None else self._service_env(name, index),
            cwd=ROOT,
            log_path=self.settings.log_dir / f"{name}.log",
        )
        return Managed(name, spec, ready)

    def _dependency(self, dep: Dependency) -> Managed:
        return Managed(dep.name, dep.spec(), dep.wait_ready)

    def gateway_settings(self) -> GatewaySettings:
        """The gateway's typed settings, pointing at this mesh's ports."""
        s = self.settings
        return GatewaySettings(
            host=s.host,
            port=s.gateway_port,
            admin_port=s.gateway_admin_port,
            upstreams=[
                Upstream(
                    name=c.name, host=s.host, port=self._service_port(i), package=c.package, health_service=c.full_name
                )
                for i, c in enumerate(self.contracts)
            ],
            catalog=Upstream(name=CATALOG, host=s.host, port=s.catalog_port, health_service=""),
            web=StaticSite(name=WEB, host=s.host, port=self.web_port),
            access_log_path=s.log_dir / "gateway-access.log",
            xds=XdsSource(host=s.host, port=s.xds_port),
            max_request_bytes_overrides={"chatmesh.ingest.v1": s.ingest_max_request_bytes},
            edge_auth=EdgeAuth(
                enabled=s.gateway_edge_auth,
                access_token_public_key_file=(s.key_dir / "access_token.pub.pem").resolve(),
                service_token_public_key_file=(s.key_dir / "service_token.pub.pem").resolve(),
            ),
        )

    def routes(self) -> list[RouteSpec]:
        """One route per service package, from the contracts."""
        return route_specs(self.contracts)

    async def prepare(self) -> None:
        """Install and configure the dependencies, write keys; build the start plan."""
        s = self.settings
        for d in (s.run_dir, s.log_dir, s.key_dir):
            d.mkdir(parents=True, exist_ok=True)
        if not (s.key_dir / "access_token.pem").exists():
            generate_key_pair(s.key_dir / "access_token.pem", s.key_dir / "access_token.pub.pem")
        if not (s.key_dir / "service_token.pem").exists():  # mesh processes acting for users (ingest workers)
            generate_key_pair(s.key_dir / "service_token.pem", s.key_dir / "service_token.pub.pem")
        nats_nodes = self._nats_nodes()
        cassandra_nodes = self._cassandra_nodes()
        envoy = Envoy(self.gateway_settings(), self.routes(), s.state_dir / "envoy")
        # Cassandra's prepare installs it once (under a lock): the other nodes' wait for the first.
        first: list[Dependency] = [*nats_nodes, cassandra_nodes[0], envoy]
        await asyncio.gather(*(asyncio.to_thread(d.prepare) for d in first))
        await asyncio.gather(*(asyncio.to_thread(d.prepare) for d in cassandra_nodes[1:]))
        services = [self._service(c, i, r) for i, c in enumerate(self.contracts) for r in self.replicas[c.name]]
        catalog_target = f"{s.host}:{s.catalog_port}"
        services.append(self._python(CATALOG, "mesh.catalog", -1, lambda t: wait_grpc_serving(catalog_target, "", t)))
        services.append(self._static_site())
        services.append(self._xds())
        workers = self._workers()
        gateway = self._dependency(envoy)
        admin = f"http://{s.host}:{s.gateway_admin_port}"
        clusters = [c.name for c in self.contracts] + [CATALOG, WEB]

        async def gateway_ready(timeout_s: float) -> None:
            await envoy.wait_ready(timeout_s)
            await wait_gateway_clusters(admin, clusters, timeout_s)

        gateway.wait_ready = gateway_ready
        # Every NATS node at once (a cluster elects its JetStream leader once two are up); the
        # Cassandra seed first, then the other nodes (they meet the cluster through it).
        dependencies = [*(self._dependency(d) for d in nats_nodes), self._dependency(cassandra_nodes[0])]
        self._groups = [
            dependencies,
            [self._dependency(d) for d in cassandra_nodes[1:]],
            services,
            workers,
            [gateway],
        ]
        self._groups = [group for group in self._groups if group]
        self._by_name = {item.name: item for group in self._groups for item in group}

    def _nats_nodes(self) -> list[Nats]:
        """One nats-server, or a cluster of ``nats_nodes`` on 127.0.0.1, 127.0.0.2...: nats, nats-2..."""
        s = self.settings
        count = s.nats_nodes
        hosts = [s.node_host(i) for i in range(count)]
        nodes = []
        for i, host in enumerate(hosts):
            name = "nats" if i == 0 else f"nats-{i + 1}"
            config = NatsConfig(
                home=s.state_dir / name,
                host=host,
                port=s.nats_port,
                sync_interval=s.nats_sync_interval,
                server_name=name if count > 1 else "",
                cluster_port=s.nats_cluster_port if count > 1 else 0,
                routes=tuple(f"{other}:{s.nats_cluster_port}" for other in hosts if other != host),
            )
            nodes.append(Nats(config, name=name))
        return nodes

    def _cassandra_nodes(self) -> list[Cassandra]:
        """One Cassandra node, or a cluster of ``cassandra_nodes`` (127.0.0.1 the seed): cassandra, cassandra-2..."""
        s = self.settings
        count = s.cassandra_nodes
        nodes = []
        for i in range(count):
            name = "cassandra" if i == 0 else f"cassandra-{i + 1}"
            config = CassandraConfig(
                home=s.state_dir / name,
                host=s.node_host(i),
                native_port=s.cql_port,
                storage_port=s.cql_storage_port,
                heap_mb=s.cassandra_heap_mb,
                seeds=(s.host,) if count > 1 else (),
                node_index=i,
                cluster_size=count,
                crash_safe=True,  # a SIGKILLed node comes back with every acknowledged write
            )
            nodes.append(Cassandra(config, name=name))
        return nodes

    def _workers(self) -> list[Managed]:
        s = self.settings
        names = [c.name for c in self.contracts]
        workers: list[Managed] = []
        for kind in WORKERS:
            for number in range(1, int(getattr(s, kind.count_setting)) + 1):
                name = f"{kind.service}-worker-{number}"
                metrics_port = s.worker_metrics_base_port + len(workers)
                prefix = f"CHATMESH_{kind.service.upper()}_"
                env = {
                    **self._service_env(kind.service, names.index(kind.service)),
                    f"{prefix}PORT": "0",
                    f"{prefix}METRICS_PORT": str(metrics_port),
                    f"{prefix}WORKER_NAME": name,
                }
                workers.append(self._python(name, kind.module, -1, self._metrics_ready(metrics_port), env))
        return workers

    def _metrics_ready(self, port: int) -> Callable[[float], Awaitable[None]]:
        url = f"http://{self.settings.host}:{port}/metrics"
        return lambda t: wait_http_ok(url, t)

    def _xds(self) -> Managed:
        """The xDS control plane: Envoy's service clusters and their endpoints from the REGISTRY bucket."""
        s = self.settings
        env = {
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen" / "python")]),
            "PYTHONUNBUFFERED": "1",
            "CHATMESH_XDS_HOST": s.host,
            "CHATMESH_XDS_PORT": str(s.xds_port),
            "CHATMESH_XDS_SOURCE": "registry",
            "CHATMESH_XDS_NATS__URL": ",".join(f"nats://{s.node_host(i)}:{s.nats_port}" for i in range(s.nats_nodes)),
            "CHATMESH_XDS_NATS__STREAM_REPLICAS": str(s.nats_nodes),
        }
        target = f"{s.host}:{s.xds_port}"
        return self._python(XDS, "mesh.xds", -1, lambda t: wait_grpc_serving(target, "", t), env)

    def _static_site(self) -> Managed:
        s = self.settings
        root = s.web_root if s.web_root.is_absolute() else ROOT / s.web_root
        spec = ProcessSpec(
            name=WEB,
            argv=[
                sys.executable,
                "-m",
                "mesh.static_site",
                "--root",
                str(root),
                "--host",
                s.host,
                "--port",
                str(self.web_port),
            ],
            env={"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
            cwd=ROOT,
            log_path=s.log_dir / f"{WEB}.log",
            stop_timeout_s=5.0,
        )
        health = f"http://{s.host}:{self.web_port}/healthz"
        return Managed(WEB, spec, lambda t: wait_http_ok(health, t))

    def _service(self, contract: ServiceContract, index: int, replica: Replica) -> Managed:
        target = f"{self.settings.host}:{replica.port}"
        prefix = f"CHATMESH_{contract.name.upper()}_"
        env = {
            **self._service_env(contract.name, index),
            f"{prefix}PORT": str(replica.port),
            f"{prefix}METRICS_PORT": str(replica.metrics_port),
            f"{prefix}REPLICA": replica.name,
        }
        item = self._python(
            replica.name,
            f"services.{contract.name}",
            index,
            lambda t: wait_grpc_serving(target, contract.full_name, t),
            env,
        )
        item.replica = replica
        return item

    # -- running ------------------------------------------------------------------

    async def _start(self, item: Managed, timeout_s: float) -> None:
        item.proc = await launch(item.spec)
        item.started_at = time.monotonic()
        (self.settings.run_dir / f"{item.name}.pid").write_text(str(item.proc.pid))
        ready = asyncio.ensure_future(item.wait_ready(timeout_s))
        exited = asyncio.ensure_future(item.proc.wait())
        done, _ = await asyncio.wait({ready, exited}, return_when=asyncio.FIRST_COMPLETED)
        if exited in done:
            ready.cancel()
            raise RuntimeError(
                f"{item.name} exited with code {item.proc.returncode} while starting; see {item.spec.log_path}"
            )
        exited.cancel()
        ready.result()

    async def up(self) -> None:
        """Start everything in order; raise if anything fails to become healthy."""
        started = time.monotonic()
        await self.prepare()
        for group in self._groups:
            await asyncio.gather(*(self._start(item, self.settings.ready_timeout_s) for item in group))
            log.info("healthy: %s", ", ".join(item.name for item in group))
        (self.settings.run_dir / "ready").write_text(self.gateway_address + "\n")
        print(
            f"chatmesh is up in {time.monotonic() - started:.0f}s: gateway at {self.gateway_address} "
            f"(browser client, gRPC, gRPC-web; "
            f"try `grpcurl -plaintext {self.settings.host}:{self.settings.gateway_port} list`)",
            flush=True,
        )

    @property
    def gateway_address(self) -> str:
        """Where clients connect."""
        return f"http://{self.settings.host}:{self.settings.gateway_port}"

    async def watch(self) -> None:
        """Restart processes that die, until asked to stop.

        Each process has a watcher of its own: while one waits out its back-off or a slow
        start (Cassandra's), another that dies at the same time is restarted without waiting
        for it.
        """
        self._watchers = [
            asyncio.ensure_future(self._keep_running(item))
            for group in self._groups
            for item in group
            if item.proc is not None
        ]
        try:
            await self._stopping.wait()
        finally:
            await cancel_and_wait(self._watchers)

    async def _keep_running(self, item: Managed) -> None:
        """Wait for ``item`` to exit and start it again, with back-off, until the mesh stops."""
        while not self._stopping.is_set():
            if item.proc is not None:
                await item.proc.wait()
            if self._stopping.is_set() or item.retired:
                return
            code = item.proc.returncode if item.proc else None
            if item.restart_request is not None:
                await self._planned_restart(item)
                continue
            uptime = time.monotonic() - item.started_at
            # Back off exponentially, but forgive a process that ran a while before dying.
            item.restarts = 0 if uptime > 60 else item.restarts + 1
            delay = min(self.settings.restart_backoff_max_s, 0.5 * 2**item.restarts)
            log.warning("%s exited with code %s; restarting in %.1fs", item.name, code, delay)
            print(f"chatmesh: {item.name} exited with code {code}; restarting in {delay:.1f}s", flush=True)
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
                return
            except TimeoutError:
                pass
            try:
                await self._start(item, self.settings.ready_timeout_s)
                print(f"chatmesh: {item.name} restarted", flush=True)
            except (RuntimeError, TimeoutError, OSError) as exc:
                log.error("restart of %s failed: %s", item.name, exc)
                print(f"chatmesh: restart of {item.name} failed: {exc}", flush=True)
                if item.proc is not None and item.proc.returncode is None:
                    await terminate(item.proc, item.spec.stop_timeout_s)  # never healthy: start it again

    async def _planned_restart(self, item: Managed) -> None:
        """Start ``item`` again at once (it was stopped on purpose) and answer whoever asked."""
        request, item.restart_request = item.restart_request, None
        assert request is not None
        try:
            await self._start(item, self.settings.ready_timeout_s)
        except (RuntimeError, TimeoutError, OSError) as exc:
            # Restarted like any crashed process from here on; whoever asked waits until it is routed to.
            log.error("planned restart of %s failed: %s", item.name, exc)
            print(f"chatmesh: planned restart of {item.name} failed: {exc}; restarting it", flush=True)
            if item.proc is not None and item.proc.returncode is None:
                await terminate(item.proc, item.spec.stop_timeout_s)
        finally:
            if not request.done():
                request.set_result(None)

    async def restart_replica(self, name: str) -> None:
        """Stop replica ``name`` gracefully (it drains), start it, wait until Envoy routes to it again."""
        item = self._by_name.get(name)
        if item is None or item.replica is None:
            raise KeyError(f"no replica named {name!r}")
        if item.restart_request is not None:
            raise RuntimeError(f"{name} is already restarting")
        if item.proc is None or item.proc.returncode is not None:
            raise RuntimeError(f"{name} is not running (the supervisor is restarting it)")
        request: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        item.restart_request = request
        log.info("restarting %s (planned)", name)
        await terminate(item.proc, item.spec.stop_timeout_s)  # SIGTERM: draining, grace, stop
        await request
        await wait_gateway_host(
            f"http://{self.settings.host}:{self.settings.gateway_admin_port}",
            item.replica.service,
            f"{self.settings.host}:{item.replica.port}",
            self.settings.ready_timeout_s,
        )
        log.info("restarted %s: routed to again", name)

    async def add_replica(self, service: str) -> tuple[Replica, float]:
        """Start one more replica of ``service`` on free ports; it and when it became SERVING (unix time).

        It registers itself, so Envoy routes to it once the control plane pushes it; the
        services that call ``service`` keep the replicas they were started with (their
        targets are fixed at start) until they restart.
        """
        if service not in self.replicas:
            raise KeyError(f"no service named {service!r}")
        if service == "ingest" and not os.environ.get("CHATMESH_INGEST_QDRANT_URL"):
            raise RuntimeError("ingest runs one replica with the embedded store")
        index = [c.name for c in self.contracts].index(service)
        taken = {r.name for r in self.replicas[service]}
        number = next(n for n in range(2, 10_000) if f"{service}-{n}" not in taken)
        replica = Replica(service, f"{service}-{number}", free_port(self.settings.host), free_port(self.settings.host))
        item = self._service(self.contracts[index], index, replica)
        serving: list[float] = []
        wait = item.wait_ready

        async def ready(timeout_s: float) -> None:
            await wait(timeout_s)
            serving.append(time.time())

        item.wait_ready = ready
        await self._start(item, self.settings.ready_timeout_s)
        item.wait_ready = wait
        self.replicas[service].append(replica)
        self._by_name[replica.name] = item
        self._groups[self._service_group()].append(item)
        self._watchers.append(asyncio.ensure_future(self._keep_running(item)))
        log.info("added %s on port %d", replica.name, replica.port)
        return replica, serving[0]

    async def remove_replica(self, service: str) -> Replica:
        """Drain and stop the newest replica of ``service`` (never its last one)."""
        replicas = self.replicas.get(service)
        if not replicas:
            raise KeyError(f"no service named {service!r}")
        if len(replicas) == 1:
            raise RuntimeError(f"{service} has one replica left")
        replica = replicas[-1]
        item = self._by_name[replica.name]
        item.retired = True
        if item.proc is not None:
            await terminate(item.proc, item.spec.stop_timeout_s)  # SIGTERM: draining, grace, stop
        replicas.remove(replica)
        del self._by_name[replica.name]
        self._groups[self._service_group()].remove(item)
        (self.settings.run_dir / f"{item.name}.pid").unlink(missing_ok=True)
        log.info("removed %s", replica.name)
        return replica

    def _service_group(self) -> int:
        return next(i for i, group in enumerate(self._groups) if any(item.replica for item in group))

    async def _serve_control(self) -> asyncio.AbstractServer:
        """The control socket: one JSON request per connection, one JSON answer."""
        path = self.settings.run_dir / CONTROL_SOCKET
        path.unlink(missing_ok=True)
        return await asyncio.start_unix_server(self._control, path=str(path))

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reply: dict[str, object]
        try:
            request = json.loads(await reader.readline())
            op = request.get("op") if isinstance(request, dict) else None
            if op == "replicas":
                service = str(request.get("service", ""))
                if service not in self.replicas:
                    raise KeyError(f"no service named {service!r}")
                reply = {"ok": True, "replicas": [r.name for r in self.replicas[service]]}
            elif op == "restart":
                await self.restart_replica(str(request.get("name", "")))
                reply = {"ok": True}
            elif op == "add":
                replica, serving_at = await self.add_replica(str(request.get("service", "")))
                reply = {"ok": True, "name": replica.name, "port": replica.port, "serving_at": serving_at}
            elif op == "remove":
                replica = await self.remove_replica(str(request.get("service", "")))
                reply = {"ok": True, "name": replica.name, "port": replica.port}
            else:
                reply = {"ok": False, "error": f"unknown op {op!r}"}
        except (KeyError, ValueError, RuntimeError, TimeoutError) as exc:
            reply = {"ok": False, "error": str(exc).strip("'\"")}
        try:
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
            writer.close()
        except (ConnectionError, OSError):
            pass

    async def down(self) -> None:
        """Stop everything, gateway first, dependencies last."""
        for group in reversed(self._groups):
            await asyncio.gather(*(self._stop(item) for item in group))
        for path in self.settings.run_dir.glob("*"):
            path.unlink(missing_ok=True)

    async def _stop(self, item: Managed) -> None:
        if item.proc is not None:
            await terminate(item.proc, item.spec.stop_timeout_s)
        (self.settings.run_dir / f"{item.name}.pid").unlink(missing_ok=True)

    def request_stop(self) -> None:
        """Ask run() to stop (signal handlers call this)."""
        self._stopping.set()

    async def run(self) -> int:
        """up, watch, down; the exit code of `make up`."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            up = asyncio.ensure_future(self.up())
            stop = asyncio.ensure_future(self._stopping.wait())
            done, _ = await asyncio.wait({up, stop}, return_when=asyncio.FIRST_COMPLETED)
            if stop in done:
                up.cancel()
                return 130
            stop.cancel()
            up.result()
            control = await self._serve_control()
            try:
                await self.watch()
            finally:
                control.close()
            return 0
        except (RuntimeError, TimeoutError) as exc:
            print(f"chatmesh: up failed: {exc}", file=sys.stderr, flush=True)
            return 1
        finally:
            print("chatmesh: stopping...", flush=True)
            await self.down()
            print("chatmesh: stopped", flush=True)
