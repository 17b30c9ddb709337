"""A real single-node Apache Cassandra 5.0 for the supervisor and the test fixtures.

Apache does not publish the Cassandra binary tarball on Maven Central, but it does publish
``org.apache.cassandra:cassandra-all`` and every runtime dependency.  :func:`install` resolves
those with Maven into a per-user cache (``~/.cache/chatmesh/cassandra-<version>/lib``, outside
the repository so that every clone on the machine shares it), and :class:`Cassandra` launches
``org.apache.cassandra.service.CassandraDaemon`` from there with our own ``cassandra.yaml`` and
``logback.xml`` (templates in ``mesh/deps/cassandra/``) and the JVM options that ``bin/cassandra``
would assemble for Java 17.

Start-up time is what tests and CI wait on.  Besides the Cassandra settings that are safe to
shorten on a lone node (gossip settling, ring delay, schema agreement, a skip-list measurement
at start-up), three JVM measures cut the CPU a start costs by about half on a 2-core machine:

* a class-data-sharing archive of the ~9,600 classes a node loads, recorded once per JVM build
  by a training run inside :func:`install` (``cds/`` in the cache);
* C1-only JIT compilation: C2 would spend seconds of CPU compiling start-up code that never
  runs again;
* the serial collector and a heap that starts at 256 MB and grows to ``heap_mb``.

The last two cost steady-state throughput, so benchmarks should set
``CHATMESH_CASSANDRA_TUNING=throughput`` (G1, fixed heap, C1+C2, as Cassandra ships).

Every path a node writes to lies under its :attr:`CassandraConfig.home`, JMX is not started, and
all ports come from the config, so several nodes (one per test session, on free ports) can run
at once.

Command line::

    python -m mesh.deps.cassandra install                 # only fill the cache (CI warm-up)
    python -m mesh.deps.cassandra --home DIR --port N     # run one node in the foreground
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import importlib
import logging
import os
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh.deps import jvm
from mesh.deps.base import ProcessSpec, free_port, wait_tcp
from mesh.deps.jvm import JvmInstallError, default_cache_root

#: The Cassandra release that is installed and run: the newest 5.0.x on Maven Central.
CASSANDRA_VERSION = "5.0.9"

#: Extra JVM options, appended last (so they win), e.g. ``-XX:+UseSerialGC``.
JVM_OPTS_ENV = "CHATMESH_CASSANDRA_JVM_OPTS"

#: ``startup`` (default: tests, CI, development) or ``throughput`` (benchmarks): see ``_tuning_options``.
TUNING_ENV = "CHATMESH_CASSANDRA_TUNING"

_log = logging.getLogger(__name__)

#: Templates and the Maven project that lists the jars.
_RESOURCES = Path(__file__).with_name("cassandra")

#: Written last by the jar download; its presence means the lib directory is complete.
_INSTALLED_MARKER = ".installed"

#: From Cassandra's conf/jvm17-server.options: Cassandra reaches into JDK internals (off-heap
#: memory, object sizing, RMI, javac for UDFs) and Java 17 refuses that without these.
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

#: Skips flushing schema changes (see _SINGLE_NODE_PROPERTIES); never for a node whose data must survive a crash.
UNSAFE_SYSTEM_PROPERTY = "-Dcassandra.unsafesystem=true"

#: System properties that shorten start-up or stop; each is safe because the node is alone.
_SINGLE_NODE_PROPERTIES = (
    # Nothing to gossip with: do not wait for gossip to settle, nor for the 30 s ring delay.
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",
    "-Dcassandra.ring_delay_ms=100",
    # No other node to agree on schema with.
    "-Dcassandra.skip_schema_check=true",
    "-Dcassandra.migration_delay_ms=0",
    # The default superuser is otherwise created after a 10 s delay.
    "-Dcassandra.superuser_setup_delay_ms=0",
    # On SIGTERM a node tells its peers it is leaving, then sleeps 2 s for the news to spread.
    "-Dcassandra.shutdown_announce_in_ms=0",
    # Maven Central has no SIGAR native library and we preload no jemalloc: skip both probes
    # (and their warnings) rather than fail them at every start.
    "-Dcassandra.test.ignore_sigar=true",
    "-Dcassandra.libjemalloc=-",
    # Memtable accounting measures the per-partition overhead of a 100,000-entry skip list at
    # start-up: a second of CPU.  1,000 entries give the same figure (180 bytes) in 0.1 s.
    "-Dcassandra.memtable_row_overhead_computation_step=1000",
    # Do not force a flush of the system tables after each change to them: every CREATE/DROP
    # would flush a dozen system_schema tables (a third of the time of DDL, which tests run all
    # the time).  SIGTERM flushes everything, but a node killed hard (SIGKILL, OOM, power) then
    # restarts without the tables created since its last flush, and its commit log replay skips
    # their rows as "unknown CF": every write since is lost.  Only for throw-away test nodes,
    # see CassandraConfig.crash_safe (which the mesh's nodes turn on).
    UNSAFE_SYSTEM_PROPERTY,
    # Chronicle (audit and full-query logs) would phone home on first use.
    "-Dchronicle.analytics.disable=true",
    "-Dchronicle.announcer.disable=true",
)


#: For a node of a local cluster: the same, except what a node needs to meet its peers (gossip
#: settling, the ring delay, schema agreement); nodes join with tokens of their own, several at once.
_CLUSTER_NODE_PROPERTIES = (
    *(
        prop
        for prop in _SINGLE_NODE_PROPERTIES
        if not prop.startswith(
            ("-Dcassandra.skip_wait_for_gossip", "-Dcassandra.ring_delay", "-Dcassandra.skip_schema")
        )
    ),
    "-Dcassandra.ring_delay_ms=3000",
    "-Dcassandra.consistent.rangemovement=false",
)


class CassandraInstallError(JvmInstallError):
    """Cassandra could not be installed (no java, no mvn, or Maven failed)."""


@dataclass(frozen=True)
class CassandraConfig:
    """One Cassandra node.

    Attributes:
        home: instance directory; ``conf/``, ``data/``, ``commitlog/`` and ``logs/`` go under it.
        host: address for both CQL and the (otherwise unused) inter-node port.
        native_port: CQL port.
        storage_port: inter-node port; must differ between nodes on the same host.
        heap_mb: maximum JVM heap (-Xmx) in MiB; the heap starts smaller unless tuned for throughput.
        cluster_name: name recorded in the system tables; fixed once the node has data.
        seeds: inter-node addresses (``host``) of the cluster's seed nodes; empty: the node is
            its own seed (a lone node).
        node_index: this node's place in a cluster of ``cluster_size`` nodes (0-based): it gets
            an evenly spaced token of its own, so nodes join without bootstrapping (an empty
            cluster has nothing to stream).
        cluster_size: nodes of the cluster (1 for a lone node).
        crash_safe: lose nothing acknowledged when the node is killed hard (SIGKILL, OOM):
            acknowledge a write only once its commit log section is synced (``commitlog_sync:
            batch``; periodic sync replays only up to the last sync marker, losing up to 10 s of
            acknowledged writes), and flush schema changes at once (else the node forgets the
            tables created since its last flush, and skips their rows at replay). Off for
            throw-away test nodes (DDL a third faster, no fsync per write); the mesh turns it on.
    """

    home: Path
    host: str = "127.0.0.1"
    native_port: int = 9042
    storage_port: int = 7000
    heap_mb: int = 768
    cluster_name: str = "chatmesh"
    seeds: tuple[str, ...] = ()
    node_index: int = 0
    cluster_size: int = 1
    crash_safe: bool = False

    @property
    def initial_token(self) -> int:
        """This node's Murmur3 token: the ring cut in ``cluster_size`` equal arcs."""
        return -(2**63) + self.node_index * (2**64 // self.cluster_size) if self.cluster_size > 1 else 0


def find_java() -> Path:
    """The ``java`` that runs Cassandra (see :func:`mesh.deps.jvm.find_java`)."""
    return jvm.find_java(CassandraInstallError, "cassandra")


def install(cache_root: Path | None = None) -> Path:
    """Make sure Cassandra is in the cache and return the directory holding its jars.

    The first call resolves ``cassandra-all`` and its runtime dependencies with Maven (about
    70 MB, into ``~/.m2`` and then the cache), then runs a node once to record a class-data-sharing
    archive for the current JVM (best effort: without it a node just starts more slowly).  Later
    calls only check that both exist.  Concurrent callers (parallel test sessions) are
    serialised with a file lock.

    Args:
        cache_root: where ``cassandra-<version>/`` goes; :func:`default_cache_root` if None.

    Returns:
        The ``lib`` directory holding every jar of the classpath.

    Raises:
        CassandraInstallError: java or mvn is missing, or Maven failed.
    """
    java = find_java()  # Fail early and clearly: jars without a JVM to run them are of no use.
    root = (cache_root or default_cache_root()) / f"cassandra-{CASSANDRA_VERSION}"
    lib = root / "lib"
    if (root / _INSTALLED_MARKER).is_file() and _archive_settled(_class_data_archive(java, root)):
        return lib
    root.mkdir(parents=True, exist_ok=True)
    with jvm.exclusive_lock(root / ".lock"):
        if not (root / _INSTALLED_MARKER).is_file():  # Re-checked: another process may have done it.
            _resolve_jars(root, lib)
        archive = _class_data_archive(java, root)
        if not _archive_settled(archive):
            _record_class_data(java, lib, archive)
    return lib


def _resolve_jars(root: Path, lib: Path) -> None:
    jars = jvm.copy_dependencies(
        _RESOURCES / "pom.xml",
        root,
        lib,
        {"cassandra.version": CASSANDRA_VERSION},
        f"cassandra-all-{CASSANDRA_VERSION}.jar",
        who="cassandra",
        error=CassandraInstallError,
    )
    (root / _INSTALLED_MARKER).write_text("\n".join([CASSANDRA_VERSION, *jars]) + "\n")


def _class_data_archive(java: Path, root: Path) -> Path:
    """Where the class-data-sharing archive for this JVM build and these jars lives.

    An archive is only valid for the JVM build and the jars it was recorded with (the JVM checks,
    and ignores a mismatched one with a warning), so the name carries a digest of both: switching
    JAVA_HOME, upgrading the JDK or re-fetching the jars records a new archive instead of
    silently losing the speed-up.
    """
    java_home = java.resolve().parent.parent
    identity = [str(java_home)]
    for path in (java_home / "release", java_home / "lib/server/libjvm.so", root / _INSTALLED_MARKER):
        with contextlib.suppress(OSError):
            stat = path.stat()
            identity.append(f"{path}:{stat.st_size}:{stat.st_mtime_ns}")
    digest = hashlib.sha256("\n".join(identity).encode()).hexdigest()[:16]
    return root / "cds" / f"cassandra-{digest}.jsa"


def _archive_settled(archive: Path) -> bool:
    # A failed training run leaves a ``.failed`` note so that every start does not retry it
    # (``python -m mesh.deps.cassandra install`` removes the note and tries again).
    return archive.is_file() or archive.with_suffix(".failed").is_file()


def _record_class_data(java: Path, lib: Path, archive: Path) -> None:
    """Run a throw-away node once, with a little CQL, and keep the classes it loaded."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    home = Path(tempfile.mkdtemp(prefix="train-", dir=archive.parent))
    config = CassandraConfig(home=home, native_port=free_port(), storage_port=free_port())
    _write_conf(config, home)
    class_data = [f"-XX:ArchiveClassesAtExit={partial}", "-Xlog:cds*=error"]
    argv = [*_no_memory_lock_prefix(), *_java_argv(config, home, java, lib, class_data)]
    _log.info("cassandra: recording a class-data-sharing archive (one-off, about 10 s)")
    started = time.monotonic()
    try:
        with open(home / "logs" / "cassandra.log", "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=home,
                env={**os.environ, "MALLOC_ARENA_MAX": "4"},
                start_new_session=True,
            )
        try:
            _wait_tcp_blocking(proc, config.host, config.native_port, timeout_s=180.0)
            with contextlib.suppress(Exception):  # The classes loaded so far are still worth keeping.
                _exercise_cql(config.host, config.native_port)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=120.0)  # The archive is written as the JVM exits.
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if not partial.is_file() or partial.stat().st_size == 0:
            raise RuntimeError(f"the JVM exited with {code} without writing {partial}")
        partial.rename(archive)
        # Archives of earlier JDKs or jar sets would never be used again (60 MB each).
        for stale in archive.parent.glob("cassandra-*"):
            if stale.is_file() and stale.stem != archive.stem:
                stale.unlink(missing_ok=True)
        _log.info("cassandra: class-data archive %s recorded in %.1fs", archive.name, time.monotonic() - started)
    except Exception as exc:  # noqa: BLE001 - best effort: the node runs without an archive too
        partial.unlink(missing_ok=True)
        archive.with_suffix(".failed").write_text(f"{exc}\nlog: {home / 'logs' / 'cassandra.log'}\n")
        _log.warning("cassandra: no class-data archive (start-up will be slower): %s", exc)
        return  # Keep the training home: its log says what went wrong.
    shutil.rmtree(home, ignore_errors=True)


def _wait_tcp_blocking(proc: subprocess.Popen[bytes], host: str, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the training node exited with {proc.returncode} before opening its CQL port")
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the training node did not open {host}:{port} in {timeout_s}s") from None
            time.sleep(0.1)


def _exercise_cql(host: str, port: int) -> None:
    # What every test does first: schema changes, writes, a lightweight transaction, reads.  The
    # server-side classes for these then come from the archive too.
    cluster = local_cluster(host, port, timeout_s=30.0)
    try:
        session = cluster.connect()
        session.execute(
            "CREATE KEYSPACE IF NOT EXISTS train"
            " WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        session.execute("CREATE TABLE IF NOT EXISTS train.t (k text, c int, v text, PRIMARY KEY (k, c))")
        insert = session.prepare("INSERT INTO train.t (k, c, v) VALUES (?, ?, ?)")
        for i in range(50):
            session.execute(insert, ("k", i, "v"))
        session.execute("INSERT INTO train.t (k, c, v) VALUES ('k', -1, 'v') IF NOT EXISTS")
        session.execute("UPDATE train.t SET v = 'w' WHERE k = 'k' AND c = -1 IF v = 'v'")
        session.execute("SELECT * FROM train.t WHERE k = 'k' LIMIT 10").all()
        session.execute("DROP KEYSPACE train")
    finally:
        cluster.shutdown()


class Cassandra:
    """One Cassandra node, as a :class:`mesh.deps.base.Dependency`."""

    def __init__(self, config: CassandraConfig, cache_root: Path | None = None, name: str = "cassandra") -> None:
        """Describe the node; nothing is touched until :meth:`prepare`.

        Args:
            config: ports, paths and sizes of the node.
            cache_root: where Cassandra is cached; :func:`default_cache_root` if None.
        """
        self.name = name
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
        """Install Cassandra if needed and (re)write ``conf/``; keeps any existing data."""
        self._lib = install(self._cache_root)
        _write_conf(self.config, self.home)

    def spec(self) -> ProcessSpec:
        """The ``java ... CassandraDaemon`` command line, in the foreground.

        Raises:
            CassandraInstallError: java is missing.
        """
        java = find_java()
        lib = self._lib or install(self._cache_root)
        archive = _class_data_archive(java, lib.parent)
        class_data = [f"-XX:SharedArchiveFile={archive}"] if archive.is_file() else []
        return ProcessSpec(
            name=self.name,
            argv=[*_no_memory_lock_prefix(), *_java_argv(self.config, self.home, java, lib, class_data)],
            log_path=self.log_path,
            # glibc's default of 8 malloc arenas per core inflates a JVM's resident set.
            env={"MALLOC_ARENA_MAX": "4"},
            cwd=self.home,
            # SIGTERM runs Cassandra's drain hook (flush memtables, close the commit log); it
            # takes about 2.5 s, most of it Netty's fixed 2 s quiet period for event loops.
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
    cluster = local_cluster(host, port, timeout_s)
    try:
        session = cluster.connect()
        row = session.execute("SELECT release_version FROM system.local").one()
        return str(row.release_version)
    finally:
        cluster.shutdown()


def local_cluster(host: str, port: int, timeout_s: float = 10.0) -> Any:
    """A scylla-driver ``Cluster`` for one local node: only that host, no metadata fetched.

    For readiness probes, tests and tools; call ``.connect()`` on it and ``.shutdown()`` after.

    Args:
        host: CQL address.
        port: CQL port.
        timeout_s: connect and request timeout.

    Returns:
        A ``cassandra.cluster.Cluster`` (typed ``Any``: the driver ships no type information, and
        importing it through importlib keeps this module mypy-strict clean whether or not the
        project's mypy config silences that package).
    """
    driver = importlib.import_module("cassandra.cluster")
    policies = importlib.import_module("cassandra.policies")
    profile = driver.ExecutionProfile(
        load_balancing_policy=policies.WhiteListRoundRobinPolicy([host]), request_timeout=timeout_s
    )
    return driver.Cluster(
        [host],
        port=port,
        execution_profiles={driver.EXEC_PROFILE_DEFAULT: profile},
        connect_timeout=timeout_s,
        control_connection_timeout=timeout_s,
        # Neither the readiness probe nor the training run needs the metadata fetched by default.
        schema_metadata_enabled=False,
        token_metadata_enabled=False,
    )


def _write_conf(config: CassandraConfig, home: Path) -> None:
    for sub in ("conf/triggers", "data", "commitlog", "logs", "tmp"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    template = string.Template((_RESOURCES / "cassandra.yaml.template").read_text())
    # A lone node is its own seed; an IPv6 address needs brackets before the port.
    seeds = ",".join(
        f"[{seed}]:{config.storage_port}" if ":" in seed else f"{seed}:{config.storage_port}"
        for seed in (config.seeds or (config.host,))
    )
    yaml = template.substitute(
        cluster_name=config.cluster_name.replace("'", "''"),
        host=config.host,
        seed=seeds,
        initial_token=config.initial_token,
        commitlog_sync="commitlog_sync: batch"
        if config.crash_safe
        else "commitlog_sync: periodic\ncommitlog_sync_period: 10000ms",
        native_port=config.native_port,
        storage_port=config.storage_port,
        home=str(home),
    )
    _write_if_changed(home / "conf" / "cassandra.yaml", yaml)
    _write_if_changed(home / "conf" / "logback.xml", (_RESOURCES / "logback.xml").read_text())


def _write_if_changed(path: Path, text: str) -> None:
    # prepare() runs before every start; identical rewrites would only churn mtimes.
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)


def _java_argv(config: CassandraConfig, home: Path, java: Path, lib: Path, class_data: list[str]) -> list[str]:
    conf = home / "conf"
    extra = os.environ.get(JVM_OPTS_ENV, "").split()
    return [
        str(java),
        *_tuning_options(config.heap_mb, extra),
        "-Xss256k",
        *class_data,
        # From jvm-server.options: lower-priority background work, and no /tmp/hsperfdata mmap
        # (it causes pauses, and would litter /tmp with a file per test node).
        "-XX:+UseThreadPriorities",
        "-XX:+PerfDisableSharedMem",
        "-XX:+HeapDumpOnOutOfMemoryError",
        f"-XX:HeapDumpPath={home / 'logs'}",
        # Dying beats limping on after an OOM (what cassandra-env.sh arranges with kill -9).
        "-XX:+ExitOnOutOfMemoryError",
        *_JAVA17_MODULE_OPTIONS,
        # No -javaagent:jamm.jar, unlike cassandra-env.sh: the JVM cannot record class data with
        # an agent loaded, and without one Cassandra's ObjectSizes falls back to jamm's Unsafe
        # strategy, which gives the same sizes.
        *(
            prop
            for prop in (_SINGLE_NODE_PROPERTIES if config.cluster_size == 1 else _CLUSTER_NODE_PROPERTIES)
            if not (config.crash_safe and prop == UNSAFE_SYSTEM_PROPERTY)
        ),
        f"-Dcassandra.config={(conf / 'cassandra.yaml').as_uri()}",
        f"-Dlogback.configurationFile={(conf / 'logback.xml').as_uri()}",
        f"-Dcassandra.logdir={home / 'logs'}",
        f"-Dcassandra.storagedir={home / 'data'}",
        f"-Dcassandra.triggers_dir={conf / 'triggers'}",
        # Native libraries (netty, jna, zstd, snappy) are unpacked here at every start.
        f"-Djava.io.tmpdir={home / 'tmp'}",
        "-Dcassandra-foreground=yes",
        *_ip_stack_options(config.host),
        *extra,
        # Jars one by one in a fixed order, and no directory: a class-data archive is only valid
        # for the exact classpath it was recorded with.
        "-cp",
        os.pathsep.join(str(jar) for jar in _classpath(lib)),
        "org.apache.cassandra.service.CassandraDaemon",
    ]


def _classpath(lib: Path) -> list[Path]:
    # cassandra-all first, so that its classes win over any stray copy in a dependency.
    return sorted(lib.glob("*.jar"), key=lambda jar: (not jar.name.startswith("cassandra-all-"), jar.name))


def _tuning_options(heap_mb: int, extra: list[str]) -> list[str]:
    """Heap, collector and JIT options for the tuning named by ``$CHATMESH_CASSANDRA_TUNING``.

    ``throughput`` is what Cassandra ships in jvm17-server.options (G1, a fixed-size heap, tiered
    C1+C2 compilation): the one to benchmark with, since C2 code is faster once fully warm.
    ``startup`` (the default) was measured on 2 cores: about half the CPU per start (2.6-2.9 s
    against 5.0-5.5 s), and half the resident memory after a short workload (430 MB against
    880 MB); under a load of a few minutes it also used less server CPU, as C2 was still
    compiling.
    """
    tuning = os.environ.get(TUNING_ENV, "startup")
    if tuning not in ("startup", "throughput"):
        raise ValueError(f"{TUNING_ENV} must be 'startup' or 'throughput', not {tuning!r}")
    heap = [f"-Xmx{heap_mb}m"]
    gc: list[str] = []
    jit: list[str] = []
    if tuning == "throughput":
        heap.append(f"-Xms{heap_mb}m")  # Grown heaps are never given back; commit it up front.
        # G1 as in jvm17-server.options, minus its 16 MB regions (meant for multi-GB heaps)
        # and AlwaysPreTouch (it would fault in the whole heap at start).
        gc = ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=300", "-XX:+ParallelRefProcEnabled"]
    else:
        # Start small and grow: the heap a start touches is what stays resident.
        heap.append(f"-Xms{min(heap_mb, 256)}m")
        # With a sub-GB heap and two cores, the serial collector's short young pauses are
        # cheaper than G1's concurrent threads and remembered sets, and it starts faster.
        gc = ["-XX:+UseSerialGC"]
        # C1 only: C2 compiling start-up code competes with start-up itself for the 2 cores
        # (about 3 s of CPU per start) and helps nothing that runs only once.
        jit = ["-XX:TieredStopAtLevel=1"]
    if any(opt.startswith("-XX:+Use") and opt.endswith("GC") for opt in extra):
        gc = []  # The caller picked a collector in $CHATMESH_CASSANDRA_JVM_OPTS; the JVM refuses two.
    return [*heap, *gc, *jit]


def _ip_stack_options(host: str) -> list[str]:
    # jvm-server.options prefers IPv4; that would make an IPv6 listen address unusable.
    return [] if ":" in host else ["-Djava.net.preferIPv4Stack=true"]


@functools.cache
def _no_memory_lock_prefix() -> tuple[str, ...]:
    """A wrapper that takes CAP_IPC_LOCK away from the JVM when we run as root.

    CassandraDaemon always calls ``mlockall(MCL_CURRENT)``.  An ordinary user's RLIMIT_MEMLOCK
    makes that fail harmlessly (one warning), but root (CI containers) has CAP_IPC_LOCK, the call
    succeeds, and it faults in the whole committed heap and more: 1.3 GB resident instead of about
    0.5 GB, and extra start-up time.  ``setpriv`` (util-linux) drops the capability for the child
    only; where it is missing or not permitted, run without it.
    """
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return ()
    prefix = (setpriv, "--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock", "--")
    probe = subprocess.run([*prefix, "true"], capture_output=True, check=False)
    return prefix if probe.returncode == 0 else ()


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
    print(f"cassandra {CASSANDRA_VERSION}: pid {proc.pid}, log {spec.log_path}", flush=True)
    ready = asyncio.ensure_future(node.wait_ready(ready_timeout_s))
    exited = asyncio.ensure_future(proc.wait())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({ready, exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if ready.done() and ready.exception() is None:
            now = time.monotonic()
            print(
                f"cassandra ready on {node.config.host}:{node.config.native_port} in {now - started:.1f}s"
                f" (prepare {prepared - started:.1f}s, start to CQL {now - prepared:.1f}s); Ctrl-C stops it",
                flush=True,
            )
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        elif ready.done():
            print(f"cassandra: {ready.exception()}", file=sys.stderr)
        if exited.done():
            print(f"cassandra exited with {proc.returncode}; see {spec.log_path}", file=sys.stderr)
            return 1
        return 0 if stopping.done() else 1
    finally:
        for task in (ready, exited, stopping):
            task.cancel()
        code = await terminate(proc, spec.stop_timeout_s)
        print(f"cassandra stopped (exit {code})", flush=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m mesh.deps.cassandra [install | --home DIR --port N ...]``.

    Args:
        argv: command-line arguments; ``sys.argv[1:]`` if None.

    Returns:
        The process exit status.
    """
    parser = argparse.ArgumentParser(prog="python -m mesh.deps.cassandra", description="Run or install Cassandra.")
    parser.add_argument("command", nargs="?", choices=["install", "run"], default="run")
    parser.add_argument("--home", type=Path, help="instance directory (required to run)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9042, help="CQL port")
    parser.add_argument("--storage-port", type=int, default=7000)
    parser.add_argument("--heap-mb", type=int, default=768)
    parser.add_argument("--ready-timeout", type=float, default=180.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("cassandra").setLevel(logging.WARNING)  # The driver's connection chatter.
    try:
        if args.command == "install":
            started = time.monotonic()
            # An explicit install retries a class-data recording that failed before.
            with contextlib.suppress(CassandraInstallError):
                root = default_cache_root() / f"cassandra-{CASSANDRA_VERSION}"
                _class_data_archive(find_java(), root).with_suffix(".failed").unlink(missing_ok=True)
            lib = install()
            print(f"cassandra {CASSANDRA_VERSION} installed in {lib.parent} ({time.monotonic() - started:.1f}s)")
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
