"""A real S3 API server for tests and the local mesh: S3Proxy over a filesystem backend.

S3Proxy (``org.gaul:s3proxy`` from Maven Central, Apache-2.0) answers the S3 REST API,
SigV4 included, and keeps buckets as directories under :attr:`S3ProxyConfig.home`. It
stands in for AWS S3, Ceph, or any S3-compatible store; clients talk to it with boto3 as
they would to those. (MinIO is AGPL, so chatmesh does not ship it.)

:func:`install` resolves the jars once per machine into ``~/.cache/chatmesh/s3proxy-<version>``;
:class:`S3Proxy` runs ``org.gaul.s3proxy.Main`` with a properties file it writes.

Command line::

    python -m mesh.deps.s3proxy install      # only fill the cache (CI warm-up)
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mesh.deps import jvm
from mesh.deps.base import ProcessSpec, wait_tcp

#: The S3Proxy release that is installed and run.
S3PROXY_VERSION = "2.6.0"
_RESOURCES = Path(__file__).with_name("s3proxy")
_INSTALLED_MARKER = "installed"


class S3ProxyInstallError(jvm.JvmInstallError):
    """S3Proxy could not be installed (no java, no mvn, or Maven failed)."""


@dataclass(frozen=True)
class S3ProxyConfig:
    """One S3Proxy instance.

    Attributes:
        home: instance directory: the properties file, and ``data/`` (one directory a bucket).
        host: address it listens on.
        port: HTTP port of the S3 API.
        access_key: the one identity it accepts (SigV2 or SigV4).
        secret_key: that identity's secret.
        heap_mb: maximum JVM heap.
    """

    home: Path
    host: str = "127.0.0.1"
    port: int = 9000
    access_key: str = "chatmesh"
    secret_key: str = "chatmesh-secret"
    heap_mb: int = 256


def install(cache_root: Path | None = None) -> Path:
    """Make sure S3Proxy's jars are in the cache; return the directory holding them.

    Raises:
        S3ProxyInstallError: java or mvn is missing, or Maven failed.
    """
    jvm.find_java(S3ProxyInstallError, "s3proxy")
    root = (cache_root or jvm.default_cache_root()) / f"s3proxy-{S3PROXY_VERSION}"
    lib = root / "lib"
    if (root / _INSTALLED_MARKER).is_file():
        return lib
    root.mkdir(parents=True, exist_ok=True)
    with jvm.exclusive_lock(root / ".lock"):
        if not (root / _INSTALLED_MARKER).is_file():
            jars = jvm.copy_dependencies(
                _RESOURCES / "pom.xml",
                root,
                lib,
                {"s3proxy.version": S3PROXY_VERSION},
                f"s3proxy-{S3PROXY_VERSION}.jar",
                who="s3proxy",
                error=S3ProxyInstallError,
            )
            (root / _INSTALLED_MARKER).write_text("\n".join([S3PROXY_VERSION, *jars]) + "\n")
    return lib


class S3Proxy:
    """The S3 dependency (a :class:`mesh.deps.base.Dependency`)."""

    name = "s3proxy"

    def __init__(self, config: S3ProxyConfig, cache_root: Path | None = None) -> None:
        self.config = config
        self._cache_root = cache_root
        self._lib: Path | None = None

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL clients use."""
        return f"http://{self.config.host}:{self.config.port}"

    @property
    def data_dir(self) -> Path:
        """Where buckets live on disk (one directory each)."""
        return self.config.home / "data"

    @property
    def _properties_path(self) -> Path:
        return self.config.home / "s3proxy.properties"

    def prepare(self) -> None:
        """Install if needed and write the properties file."""
        self._lib = install(self._cache_root)
        c = self.config
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._properties_path.write_text(
            f"s3proxy.endpoint=http://{c.host}:{c.port}\n"
            "s3proxy.authorization=aws-v2-or-v4\n"
            f"s3proxy.identity={c.access_key}\n"
            f"s3proxy.credential={c.secret_key}\n"
            "jclouds.provider=filesystem\n"
            f"jclouds.filesystem.basedir={self.data_dir}\n"
        )

    def spec(self) -> ProcessSpec:
        """``org.gaul.s3proxy.Main`` in the foreground (after :meth:`prepare`)."""
        if self._lib is None:
            raise RuntimeError("S3Proxy.prepare() first")
        java = jvm.find_java(S3ProxyInstallError, "s3proxy")
        classpath = ":".join(str(jar) for jar in sorted(self._lib.glob("*.jar")))
        return ProcessSpec(
            name=self.name,
            argv=[
                str(java),
                f"-Xmx{self.config.heap_mb}m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",  # C1 only: starts in half the CPU, fast enough for tests
                f"-Dlogback.configurationFile={(_RESOURCES / 'logback.xml').as_uri()}",
                f"-Djava.io.tmpdir={self.config.home}",
                "-cp",
                classpath,
                "org.gaul.s3proxy.Main",
                "--properties",
                str(self._properties_path),
            ],
            log_path=self.config.home / "s3proxy.log",
            stop_timeout_s=5.0,
        )

    async def wait_ready(self, timeout_s: float) -> None:
        """Return once the S3 port accepts connections."""
        await wait_tcp(self.config.host, self.config.port, timeout_s)


def main(argv: list[str] | None = None) -> int:
    """``python -m mesh.deps.s3proxy install``: fill the cache."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["install"]:
        print("usage: python -m mesh.deps.s3proxy install", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        lib = install()
    except S3ProxyInstallError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"s3proxy {S3PROXY_VERSION} installed in {lib.parent} ({time.monotonic() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
