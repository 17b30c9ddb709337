"""Start-up code the chat benchmarks share: the real dependencies, services as processes, CPU accounting.

Everything runs on loopback, on free ports, under one temporary directory, and is stopped by
the context managers here (their ``finally`` blocks), so a benchmark leaves no process behind
even when it fails half-way.

The services run as subprocesses (``python -m services.<name>``, with the environment that
mesh/supervisor.py gives them) rather than in the benchmark's process: on a 2-core machine
the benchmark client, session and history each need their own interpreter lock to use both
cores, as they would in production; in-process they would share one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from gateway.envoy import Envoy
from gateway.routes import RouteSpec
from gateway.settings import ClientBucket, ClientRateLimits, GatewaySettings, RateLimit, Upstream
from mesh.contracts import load
from mesh.deps.base import ProcessSpec, free_port
from mesh.deps.cassandra import TUNING_ENV, Cassandra, CassandraConfig
from mesh.deps.nats import Nats, NatsConfig
from mesh.deps.process import launch, running, terminate
from mesh.supervisor import wait_gateway_clusters, wait_grpc_serving
from services.runtime.tokens import IssuedToken, Principal, TokenSigner, generate_key_pair, load_private_key

ROOT = Path(__file__).resolve().parent.parent

#: What a benchmark node gets: Cassandra's default heap in the mesh (MeshSettings.cassandra_heap_mb).
CASSANDRA_HEAP_MB = 768


@dataclass(frozen=True)
class Keys:
    """The access-token key pair the services share."""

    private: Path
    public: Path

    def signer(self, ttl_s: int = 3600) -> TokenSigner:
        """A signer of access tokens with the private key (the session service's role)."""
        return TokenSigner(load_private_key(self.private), "chatmesh", ttl_s)

    def token(self, signer: TokenSigner, user_id: str) -> IssuedToken:
        """An access token of ``user_id`` on a new device."""
        return signer.sign(Principal(user_id, str(uuid.uuid4()), str(uuid.uuid4())))


@contextlib.contextmanager
def scratch(prefix: str, keep: bool) -> Iterator[Path]:
    """A temporary directory for one run (data, logs, configs); removed at the end unless ``keep``."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield home
    finally:
        if keep:
            print(f"# kept {home}", file=sys.stderr, flush=True)
        else:
            shutil.rmtree(home, ignore_errors=True)


def make_keys(home: Path) -> Keys:
    """A fresh Ed25519 key pair under ``home/keys``."""
    keys = Keys(home / "keys" / "access_token.pem", home / "keys" / "access_token.pub.pem")
    generate_key_pair(keys.private, keys.public)
    return keys


@contextlib.asynccontextmanager
async def nats_server(home: Path) -> AsyncIterator[Nats]:
    """A fresh nats-server with JetStream under ``home/nats`` (the mesh's default 1 s fsync interval)."""
    async with running(Nats(NatsConfig(home=home / "nats", port=free_port())), ready_timeout_s=30) as dep:
        assert isinstance(dep, Nats)
        yield dep


@contextlib.asynccontextmanager
async def cassandra_node(home: Path, heap_mb: int = CASSANDRA_HEAP_MB) -> AsyncIterator[Cassandra]:
    """A fresh single Cassandra node under ``home/cassandra``, tuned for throughput (G1, C1+C2, fixed heap)."""
    os.environ[TUNING_ENV] = "throughput"  # read when the command line is built, inherited by nothing else
    config = CassandraConfig(
        home=home / "cassandra", native_port=free_port(), storage_port=free_port(), heap_mb=heap_mb
    )
    async with running(Cassandra(config), ready_timeout_s=240) as dep:
        assert isinstance(dep, Cassandra)
        yield dep


@dataclass
class ServiceProcess:
    """A chatmesh service running as a child process."""

    name: str
    port: int
    proc: asyncio.subprocess.Process
    log_path: Path

    @property
    def target(self) -> str:
        """host:port for a gRPC channel."""
        return f"127.0.0.1:{self.port}"


def service_env(
    name: str, port: int, nats: Nats, cassandra: Cassandra | None, keys: Keys, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment mesh/supervisor.py gives a service, on the given ports, plus ``extra`` settings.

    Args:
        name: service name (``session``); gives the ``CHATMESH_<NAME>_`` prefix.
        port: its gRPC port.
        nats: the NATS it uses.
        cassandra: the Cassandra it uses (None for a service without CQL: inference).
        keys: the access-token keys (session also gets the private one).
        extra: more settings, without the prefix (``{"ARGON2_TIME_COST": "1"}``).
    """
    prefix = f"CHATMESH_{name.upper()}_"
    env = {
        # The caller's own entries stay after ours (a profiler installed aside, say).
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen" / "python"), os.environ.get("PYTHONPATH", "")]),
        "PYTHONUNBUFFERED": "1",
        f"{prefix}HOST": "127.0.0.1",
        f"{prefix}PORT": str(port),
        f"{prefix}METRICS_PORT": "0",
        f"{prefix}TOKEN_PUBLIC_KEY_FILE": str(keys.public),
        f"{prefix}NATS__URL": nats.url,
        # Nobody to drain for: stop at once when the benchmark ends.
        f"{prefix}SHUTDOWN_DRAIN_S": "0",
        f"{prefix}SHUTDOWN_GRACE_S": "1",
    }
    if cassandra is not None:
        env[f"{prefix}CQL__HOSTS"] = f'["{cassandra.config.host}"]'
        env[f"{prefix}CQL__PORT"] = str(cassandra.config.native_port)
    if name == "session":
        env[f"{prefix}SIGNING_KEY_FILE"] = str(keys.private)
    env.update({f"{prefix}{key}": value for key, value in (extra or {}).items()})
    return env


@contextlib.asynccontextmanager
async def service(
    name: str, home: Path, env: dict[str, str], port: int, profile_dir: Path | None = None
) -> AsyncIterator[ServiceProcess]:
    """Run ``python -m services.<name>`` until the block ends; yield once its health check says SERVING.

    Args:
        name: service name; its module is ``services.<name>``.
        home: the benchmark's directory; the log goes to ``home/logs/<name>.log``.
        env: its environment (see :func:`service_env`); ``port`` must be the one in it.
        port: its gRPC port.
        profile_dir: if set, run it under cProfile (bench.profiled) and write ``<name>.prof`` there.
    """
    module = f"services.{name}"
    argv = [sys.executable, "-m", module]
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "bench.profiled", str(profile_dir / f"{name}.prof"), module]
    spec = ProcessSpec(name=name, argv=argv, env=env, cwd=ROOT, log_path=home / "logs" / f"{name}.log")
    proc = await launch(spec)
    try:
        contract = load(name)
        ready = asyncio.ensure_future(wait_grpc_serving(f"127.0.0.1:{port}", contract.full_name, 120))
        exited = asyncio.ensure_future(proc.wait())
        done, _ = await asyncio.wait({ready, exited}, return_when=asyncio.FIRST_COMPLETED)
        if exited in done:
            ready.cancel()
            tail = "\n".join(spec.log_path.read_text(errors="replace").splitlines()[-5:])
            raise RuntimeError(f"{name} exited with {proc.returncode} while starting; its log ends:\n{tail}")
        exited.cancel()
        ready.result()
        yield ServiceProcess(name, port, proc, spec.log_path)
    finally:
        # The profiler writes its file while the process exits: give it time before SIGKILL.
        await terminate(proc, 60.0 if profile_dir is not None else 15.0)


_UNDRAINABLE = ClientBucket(burst=10_000_000, per_second=10_000_000)


@contextlib.asynccontextmanager
async def gateway(home: Path, services: Iterable[ServiceProcess]) -> AsyncIterator[GatewaySettings]:
    """Envoy (the production rendering) in front of ``services``; yields once every upstream is healthy.

    The rate limiters get buckets the benchmark cannot drain: it measures the mesh, not the limiters.
    The first service also answers the gateway's catalog routes (health and reflection).
    """
    upstreams: list[Upstream] = []
    routes: list[RouteSpec] = []
    for svc in services:
        contract = load(svc.name)
        upstreams.append(
            Upstream(name=svc.name, port=svc.port, package=contract.package, health_service=contract.full_name)
        )
        routes.append(
            RouteSpec(package=contract.package, cluster=svc.name, streaming_methods=list(contract.server_streaming))
        )
    settings = GatewaySettings(
        port=free_port(),
        admin_port=free_port(),
        upstreams=upstreams,
        catalog=Upstream(name="catalog", port=upstreams[0].port, health_service=""),
        rate_limit=RateLimit(max_tokens=10_000_000, tokens_per_fill=10_000_000, fill_interval_s=1),
        # Per-client buckets too (one address, open-loop anonymous submits): none a bench can drain.
        client_rate_limits=ClientRateLimits(user=_UNDRAINABLE, address=_UNDRAINABLE),
        access_log_path=home / "logs" / "gateway-access.log",
    )
    async with running(Envoy(settings, routes, home / "envoy"), ready_timeout_s=60):
        await wait_gateway_clusters(
            f"http://127.0.0.1:{settings.admin_port}", [u.name for u in upstreams] + ["catalog"], 60
        )
        yield settings


# -- CPU accounting -------------------------------------------------------------------


def dependency_pids(home: Path) -> dict[str, int]:
    """Pids of nats-server, Cassandra and Envoy started under ``home`` (found by their command lines)."""
    found: dict[str, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        line = b" ".join(argv).decode(errors="replace")
        if str(home) not in line:
            continue
        if "nats-server" in line:
            found["nats"] = int(proc.name)
        elif "CassandraDaemon" in line:
            found["cassandra"] = int(proc.name)
        elif "envoy" in argv[0].decode(errors="replace"):
            found["envoy"] = int(proc.name)
    return found


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_s(stat: Path) -> float:
    """User + system CPU seconds in a /proc stat file (0 if the process is gone)."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15 of stat(5))


def _process_cpu_s(pid: int) -> float:
    """CPU seconds of every thread of ``pid`` so far."""
    return _cpu_s(Path(f"/proc/{pid}/stat"))


def _main_thread_cpu_s(pid: int) -> float:
    """CPU seconds of the main thread of ``pid`` so far (a Python service's event loop)."""
    return _cpu_s(Path(f"/proc/{pid}/task/{pid}/stat"))


def _children_cpu_s(pid: int) -> float:
    """CPU seconds so far of the live child processes of ``pid`` (a worker's render process)."""
    total = 0.0
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            with contextlib.suppress(OSError):
                total += _process_cpu_s(int(child))
    return total


def jit_compiler_cpu_s(pid: int) -> float:
    """CPU seconds the JVM ``pid``'s JIT compiler threads (C1, C2) used so far."""
    total = 0.0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                if (task / "comm").read_text().startswith(("C1 Compiler", "C2 Compiler")):
                    total += _cpu_s(task / "stat")
    return total


async def warm_until_jit_settles(
    pid: int,
    load: Callable[[], Awaitable[object]],
    *,
    settled_cores: float = 0.05,
    min_rounds: int = 2,
    limit_s: float = 150.0,
) -> tuple[float, float]:
    """Run ``load`` (a few seconds of the benchmark's own traffic) again and again until the JVM is warm.

    A node tuned for throughput compiles its hot paths with C2 for a minute or two after it
    starts, on these 2 cores about half a core of it: measured before that ends, a benchmark
    charges the compiler to the workload. Warm means the compilers used less than
    ``settled_cores`` during the last round.

    Returns:
        Seconds spent, and the compilers' cores during the last round.
    """
    started = time.monotonic()
    rounds = 0
    while True:
        before, at = jit_compiler_cpu_s(pid), time.monotonic()
        await load()
        rounds += 1
        jit = (jit_compiler_cpu_s(pid) - before) / max(1e-9, time.monotonic() - at)
        spent = time.monotonic() - started
        if (rounds >= min_rounds and jit < settled_cores) or spent > limit_s:
            return spent, jit


def _machine_busy_s() -> float:
    """CPU seconds the whole machine spent not idle so far, all cores added."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values[:8]) - idle) / _TICKS


class CpuMeter:
    """CPU used by named processes (and the whole machine) between :meth:`start` and :meth:`stop`.

    Reported in cores (CPU seconds per wall second): on this 2-core machine 2.0 is everything.
    ``other`` is what the machine spent outside the named processes: other tenants' noise.
    For the names in ``loops`` (Python processes), ``<name>_loop`` is the main thread alone: the
    event loop, where the interpreter lock is held; the rest is the process's other threads
    (the CQL driver's I/O thread, grpc's and nats' helpers). For the names in ``children``,
    ``<name>_children`` is the CPU of the processes it started (the forms worker's render
    process), counted as ours, not as ``other``.
    """

    def __init__(self, pids: dict[str, int], loops: Iterable[str] = (), children: Iterable[str] = ()) -> None:
        self._pids = pids
        self._loops = {f"{name}_loop": pids[name] for name in loops if name in pids}
        self._children = {f"{name}_children": pids[name] for name in children if name in pids}
        self._start: dict[str, float] = {}
        self._wall = 0.0
        self.seconds = 0.0
        """Wall seconds between the readings, once stopped."""

    def start(self) -> None:
        """Take the first reading."""
        self._wall = time.monotonic()
        self._start = self._read()

    def _read(self) -> dict[str, float]:
        reading = {name: _process_cpu_s(pid) for name, pid in self._pids.items()}
        reading.update({name: _main_thread_cpu_s(pid) for name, pid in self._loops.items()})
        reading.update({name: _children_cpu_s(pid) for name, pid in self._children.items()})
        reading["machine"] = _machine_busy_s()
        return reading

    def stop(self) -> dict[str, float]:
        """Take the second reading; return cores used by each name, ``machine`` and ``other``."""
        wall = self.seconds = max(1e-9, time.monotonic() - self._wall)
        now = self._read()
        cores = {name: (now[name] - self._start[name]) / wall for name in now}
        cores["other"] = cores["machine"] - sum(cores[name] for name in [*self._pids, *self._children])
        cores["ours"] = cores["machine"] - cores["other"]
        return cores
