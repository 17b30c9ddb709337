"""A real single-node Apache Cassandra 5.0 for the supervisor and the test fixtures.

Apache does not publish the Cassandra binary tarball on Maven Central, but it does publish
``org.apache.cassandra:cassandra-all`` and every runtime dependency.  :func:`install` resolves
those with Maven into a per-user cache (``~/.cache/chatmesh/cassandra-<version>/lib``, outside
the repository so that every clone on the machine shares it), and :class:`Cassandra` launches
``org.apache.cassandra.service.CassandraDaemon`` from that directory with our own
``cassandra.yaml`` and ``logback.xml`` (templates in ``mesh/deps/cassandra/``) and the JVM
options that ``bin/cassandra`` would have assembled for Java 17.

Every path a node writes to lies under its :attr:`CassandraConfig.home`, JMX is not started, and
all ports come from the config, so several nodes (one per test run, on free ports) can run at once.

Command line::

    python -m mesh.deps.cassandra install                 # only fill the cache (CI warm-up)
    python -m mesh.deps.cassandra --home DIR --port N     # run one node in the foreground
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import functools
import os
import shutil
import signal
import string
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mesh.deps.base import ProcessSpec, wait_tcp

#: The Cassandra release that is installed and run; the newest 5.0.x on Maven Central.
CASSANDRA_VERSION = "5.0.9"

#: Templates and the Maven project that lists the jars.
_RESOURCES = Path(__file__).with_name("cassandra")

#: Written last by :func:`install`; its presence means the lib directory is complete.
_INSTALLED_MARKER = ".installed"

#: From Cassandra's conf/jvm17-server.options: Cassandra reaches into JDK internals (off-heap
#: memory, jamm object sizing, RMI, javac for UDFs) and Java 17 refuses that without these.
_JAVA17_MODULE_OPTIONS = (
    "-Djdk.attach.allowAttachSelf=true",
    "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports=java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports=java.sql/java.sql=ALL-UNNAMED",
    "--add-exports=java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports=jdk.attach/sun.tools.attach=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    # Same file: let Netty use Unsafe for direct buffers, and keep its pre-4.1.75 pool sizes.
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
)

#: System properties that only shorten start-up; each is safe because the node is alone.
_FAST_START_PROPERTIES = (
    # Nothing to gossip with: do not wait for gossip to settle, nor for a ring delay.
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",
    "-Dcassandra.ring_delay_ms=100",
    # No other node to agree on schema with.
    "-Dcassandra.skip_schema_check=true",
    "-Dcassandra.migration_delay_ms=0",
    # The default superuser is only created after a delay (AllowAll auth never needs it).
    "-Dcassandra.superuser_setup_delay_ms=0",
    # On SIGTERM a node tells its (non-existent) peers it is leaving, then sleeps 2 s for the
    # news to spread; there is nobody to tell.
    "-Dcassandra.shutdown_announce_in_ms=0",
    # No SIGAR native library is shipped through Maven; skip the failing probe and its warning.
    "-Dcassandra.test.ignore_sigar=true",
    # Chronicle (audit/full-query log) phones home on first use otherwise.
    "-Dchronicle.analytics.disable=true",
    "-Dchronicle.announcer.disable=true",
)

#: Extra JVM options for experiments, e.g. ``CHATMESH_CASSANDRA_JVM_OPTS="-XX:+UseG1GC"``.
JVM_OPTS_ENV = "CHATMESH_CASSANDRA_JVM_OPTS"


class CassandraInstallError(RuntimeError):
    """Cassandra could not be installed (no java, no mvn, or Maven failed)."""


@dataclass(frozen=True)
class CassandraConfig:
    """One Cassandra node.

    Attributes:
        home: instance directory; ``conf/``, ``data/``, ``commitlog/`` and ``logs/`` go under it.
        host: address for both CQL and the (unused) inter-node port.
        native_port: CQL port.
        storage_port: inter-node port; must differ between nodes on the same host.
        heap_mb: JVM heap size (-Xms and -Xmx) in MiB.
        cluster_name: name recorded in the system tables; fixed once the node has data.
    """

    home: Path
    host: str = "127.0.0.1"
    native_port: int = 9042
    storage_port: int = 7000
    heap_mb: int = 768
    cluster_name: str = "chatmesh"


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/chatmesh``, or ``~/.cache/chatmesh``: shared by every clone on the machine."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "chatmesh"


def find_java() -> Path:
    """The ``java`` to run Cassandra with: ``$JAVA_HOME/bin/java``, else the one on ``PATH``.

    Raises:
        CassandraInstallError: no java executable was found.
    """
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return Path(java_home) / "bin" / "java"
    found = shutil.which("java")
    if found is None:
        raise CassandraInstallError("cassandra: `java` not found (install a Java 17 JDK or set JAVA_HOME)")
    return Path(found)


def install(cache_root: Path | None = None) -> Path:
    """Make sure the Cassandra jars are in the cache and return the directory that holds them.

    The first call resolves ``cassandra-all`` and its runtime dependencies with Maven (about
    70 MB, into ``~/.m2`` and then the cache); later calls only check a marker file.  Concurrent
    callers (parallel test sessions) are serialised with a file lock.

    Args:
        cache_root: where ``cassandra-<version>/`` goes; :func:`default_cache_root` if None.

    Returns:
        The ``lib`` directory holding every jar of the classpath.

    Raises:
        CassandraInstallError: java or mvn is missing, or Maven failed.
    """
    find_java()  # Fail early and clearly: a cache without a JVM to run it is of no use.
    root = (cache_root or default_cache_root()) / f"cassandra-{CASSANDRA_VERSION}"
    lib = root / "lib"
    if (root / _INSTALLED_MARKER).is_file():
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise CassandraInstallError("cassandra: `mvn` not found; Maven is needed once to fetch the Cassandra jars")
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(root / ".lock"):
        if (root / _INSTALLED_MARKER).is_file():  # Another process finished while we waited.
            return lib
        _resolve_jars(mvn, root, lib)
    return lib


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _resolve_jars(mvn: str, root: Path, lib: Path) -> None:
    # The pom is copied next to the jars (rather than used in place) so that Maven never writes
    # into the repository, and so that the cache records how it was made.
    pom = root / "pom.xml"
    shutil.copyfile(_RESOURCES / "pom.xml", pom)
    staging = root / "lib.partial"
    shutil.rmtree(staging, ignore_errors=True)
    argv = [
        mvn,
        "--batch-mode",
        "--quiet",
        "-Dstyle.color=never",
        "--file",
        str(pom),
        f"-Dcassandra.version={CASSANDRA_VERSION}",
        f"-Dlib.dir={staging}",
        "dependency:copy-dependencies",
    ]
    result = subprocess.run(argv, cwd=root, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-15:]
        raise CassandraInstallError(
            f"cassandra: Maven could not fetch cassandra-all {CASSANDRA_VERSION} (exit {result.returncode}):\n"
            + "\n".join(tail)
        )
    jars = sorted(p.name for p in staging.glob("*.jar"))
    for required in (f"cassandra-all-{CASSANDRA_VERSION}.jar", _jamm_jar_name(jars)):
        if required not in jars:
            raise CassandraInstallError(f"cassandra: Maven finished but {required} is missing from {staging}")
    shutil.rmtree(lib, ignore_errors=True)
    staging.rename(lib)
    (root / _INSTALLED_MARKER).write_text("\n".join([CASSANDRA_VERSION, *jars]) + "\n")


def _jamm_jar_name(jars: list[str]) -> str:
    # jamm measures object sizes (memtable accounting); its version follows cassandra-all's pom.
    for name in jars:
        if name.startswith("jamm-"):
            return name
    return "jamm-<version>.jar"


class Cassandra:
    """One Cassandra node, as a :class:`mesh.deps.base.Dependency`."""

    name = "cassandra"

    def __init__(self, config: CassandraConfig, cache_root: Path | None = None) -> None:
        """Describe the node; nothing is touched until :meth:`prepare`.

        Args:
            config: ports, paths and sizes of the node.
            cache_root: where the jars are cached; :func:`default_cache_root` if None.
        """
        self.config = config
        self._cache_root = cache_root
        self._lib: Path | None = None

    @property
    def home(self) -> Path:
        """The instance directory, made absolute (it ends up in the YAML and on the command line)."""
        return self.config.home.resolve()

    @property
    def log_path(self) -> Path:
        """Where the node's stdout and stderr (its whole log) go."""
        return self.home / "logs" / "cassandra.log"

    def prepare(self) -> None:
        """Install the jars if needed and (re)write ``conf/``; keeps any existing data."""
        self._lib = install(self._cache_root)
        home = self.home
        for sub in ("conf", "data", "commitlog", "logs", "tmp"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        template = string.Template((_RESOURCES / "cassandra.yaml.template").read_text())
        yaml = template.substitute(
            cluster_name=self.config.cluster_name.replace("'", "''"),
            host=self.config.host,
            native_port=self.config.native_port,
            storage_port=self.config.storage_port,
            home=str(home),
        )
        _write_if_changed(home / "conf" / "cassandra.yaml", yaml)
        _write_if_changed(home / "conf" / "logback.xml", (_RESOURCES / "logback.xml").read_text())

    def spec(self) -> ProcessSpec:
        """The ``java ... CassandraDaemon`` command line, in the foreground.

        Raises:
            CassandraInstallError: java is missing.
        """
        lib = self._lib or install(self._cache_root)
        home = self.home
        conf = home / "conf"
        heap = f"{self.config.heap_mb}m"
        extra = os.environ.get(JVM_OPTS_ENV, "").split()
        jamm = _jamm_jar_name(sorted(p.name for p in lib.glob("jamm-*.jar")))
        argv = [
            *_no_memory_lock_prefix(),
            str(find_java()),
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-Xss256k",
            *_gc_options(extra),
            # From jvm-server.options: lower-priority background work, no /tmp/hsperfdata
            # mmap (it causes pauses, and clutters /tmp with one file per test node).
            "-XX:+UseThreadPriorities",
            "-XX:+PerfDisableSharedMem",
            "-XX:+HeapDumpOnOutOfMemoryError",
            f"-XX:HeapDumpPath={home / 'logs'}",
            # Dying beats limping on after an OOM (what cassandra-env.sh arranges with kill -9).
            "-XX:+ExitOnOutOfMemoryError",
            *_JAVA17_MODULE_OPTIONS,
            *([] if os.environ.get("NOAGENT") else [f"-javaagent:{lib / jamm}"]),
            *_FAST_START_PROPERTIES,
            f"-Dcassandra.config={conf.joinpath('cassandra.yaml').as_uri()}",
            f"-Dlogback.configurationFile={conf.joinpath('logback.xml').as_uri()}",
            f"-Dcassandra.logdir={home / 'logs'}",
            f"-Dcassandra.storagedir={home / 'data'}",
            # Native libraries (netty, jna, zstd, snappy) are unpacked here at every start.
            f"-Djava.io.tmpdir={home / 'tmp'}",
            "-Dcassandra-foreground=yes",
            *_ip_stack_options(self.config.host),
            *extra,
            # Jars listed one by one, in a fixed order, and no directory: a class-data-sharing
            # archive is only valid for the exact classpath it was made with.
            "-cp",
            os.pathsep.join(str(jar) for jar in _classpath(lib)),
            "org.apache.cassandra.service.CassandraDaemon",
        ]
        return ProcessSpec(
            name=self.name,
            argv=argv,
            log_path=self.log_path,
            # glibc's default of 8 arenas per core inflates the resident set of a JVM.
            env={"MALLOC_ARENA_MAX": "4"},
            cwd=home,
            # SIGTERM runs Cassandra's drain hook (flush memtables, close the commit log).
            stop_timeout_s=30.0,
        )

    async def wait_ready(self, timeout_s: float) -> None:
        """Return once ``SELECT release_version FROM system.local`` succeeds over CQL.

        Args:
            timeout_s: overall limit, in seconds.

        Raises:
            TimeoutError: the node did not answer in time.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        host, port = self.config.host, self.config.native_port
        # The CQL port only opens once start-up is complete, and a TCP probe is far cheaper than
        # building a driver Cluster, so poll TCP first and query once it accepts.
        await wait_tcp(host, port, timeout_s)
        last_error: Exception | None = None
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"cassandra at {host}:{port} did not answer CQL in {timeout_s}s: {last_error}")
            try:
                await asyncio.to_thread(query_release_version, host, port, min(remaining, 10.0))
            except Exception as exc:  # noqa: BLE001 - any driver failure means "not yet"
                last_error = exc
                await asyncio.sleep(0.2)
            else:
                return


def query_release_version(host: str, port: int, timeout_s: float = 10.0) -> str:
    """Connect with the scylla-driver and return ``release_version`` from ``system.local``.

    Blocking: call it in a thread from async code.

    Args:
        host: CQL address.
        port: CQL port.
        timeout_s: connect and request timeout.

    Returns:
        The server's version string, e.g. ``5.0.9``.
    """
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import WhiteListRoundRobinPolicy

    profile = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy([host]), request_timeout=timeout_s)
    cluster = Cluster(
        [host],
        port=port,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        connect_timeout=timeout_s,
        control_connection_timeout=timeout_s,
        # A readiness probe needs none of the metadata the driver fetches by default.
        schema_metadata_enabled=False,
        token_metadata_enabled=False,
    )
    try:
        session = cluster.connect()
        row = session.execute("SELECT release_version FROM system.local").one()
        return str(row.release_version)
    finally:
        cluster.shutdown()


def _classpath(lib: Path) -> list[Path]:
    # cassandra-all first so that its classes win over any stray copy in a dependency.
    jars = sorted(lib.glob("*.jar"), key=lambda jar: (not jar.name.startswith("cassandra-all-"), jar.name))
    return jars


def _gc_options(extra: list[str]) -> list[str]:
    if any(opt.startswith("-XX:+Use") and opt.endswith("GC") for opt in extra):
        return []  # The caller picked a collector; the JVM refuses two.
    # G1, as in jvm17-server.options, but without its 16 MB regions (a few dozen regions in a
    # sub-GB heap) and without AlwaysPreTouch, which would fault in the whole heap at start.
    return ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=300", "-XX:+ParallelRefProcEnabled"]


@functools.cache
def _no_memory_lock_prefix() -> tuple[str, ...]:
    """A wrapper that takes CAP_IPC_LOCK away from the JVM, when we run as root.

    CassandraDaemon always calls ``mlockall(MCL_CURRENT)``.  An ordinary user's RLIMIT_MEMLOCK
    makes that fail harmlessly (a warning), but root (CI containers) has CAP_IPC_LOCK, so the
    call succeeds and faults in the whole committed heap and more: 1.3 GB resident instead of a
    few hundred MB, and most of a second of start-up.  ``setpriv`` (util-linux) drops the
    capability for the child only; if it is missing or not permitted, run without it.
    """
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return ()
    prefix = (setpriv, "--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock", "--")
    probe = subprocess.run([*prefix, "true"], capture_output=True, check=False)
    return prefix if probe.returncode == 0 else ()


def _ip_stack_options(host: str) -> list[str]:
    # jvm-server.options prefers IPv4; that would make an IPv6 listen address unusable.
    return [] if ":" in host else ["-Djava.net.preferIPv4Stack=true"]


def _write_if_changed(path: Path, text: str) -> None:
    # Rewriting identical files would only churn mtimes; prepare() runs on every start.
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)


async def _run_foreground(node: Cassandra, ready_timeout_s: float) -> int:
    from mesh.deps.process import launch, terminate

    started = time.monotonic()
    await asyncio.to_thread(node.prepare)
    prepared = time.monotonic()
    spec = node.spec()
    proc = await launch(spec)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"cassandra {CASSANDRA_VERSION}: starting pid {proc.pid}, log {spec.log_path}", flush=True)
    try:
        ready = asyncio.ensure_future(node.wait_ready(ready_timeout_s))
        exited = asyncio.ensure_future(proc.wait())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({ready, exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if ready.done() and ready.exception() is None:
            now = time.monotonic()
            print(
                f"cassandra ready on {node.config.host}:{node.config.native_port}"
                f" in {now - started:.1f}s (prepare {prepared - started:.1f}s, java {now - prepared:.1f}s)",
                flush=True,
            )
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for task in (ready, stopping):
            task.cancel()
        if exited.done():
            print(f"cassandra exited with {proc.returncode}; see {spec.log_path}", file=sys.stderr)
            return 1
        if ready.done() and not ready.cancelled() and ready.exception() is not None:
            print(f"cassandra: {ready.exception()}", file=sys.stderr)
        return 0 if stop.is_set() else 1
    finally:
        code = await terminate(proc, spec.stop_timeout_s)
        print(f"cassandra stopped (exit {code}) after {time.monotonic() - started:.1f}s", flush=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m mesh.deps.cassandra [install | --home DIR --port N ...]``."""
    parser = argparse.ArgumentParser(prog="python -m mesh.deps.cassandra", description=__doc__.split("\n")[0])
    parser.add_argument("command", nargs="?", choices=["install", "run"], default="run")
    parser.add_argument("--home", type=Path, help="instance directory (required to run)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9042, help="CQL port")
    parser.add_argument("--storage-port", type=int, default=7000)
    parser.add_argument("--heap-mb", type=int, default=768)
    parser.add_argument("--ready-timeout", type=float, default=180.0)
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            started = time.monotonic()
            lib = install()
            print(f"cassandra {CASSANDRA_VERSION} jars in {lib} ({time.monotonic() - started:.1f}s)")
            return 0
        if args.home is None:
            parser.error("--home is required to run a node")
        config = CassandraConfig(
            home=args.home,
            host=args.host,
            native_port=args.port,
            storage_port=args.storage_port,
            heap_mb=args.heap_mb,
        )
        return asyncio.run(_run_foreground(Cassandra(config), args.ready_timeout))
    except CassandraInstallError as exc:
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
