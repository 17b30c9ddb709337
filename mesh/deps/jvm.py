"""What the Java dependencies (Cassandra, S3Proxy) share: the cache they live in, the ``java``
that runs them, and fetching a pom's runtime jars from Maven Central into that cache.

Jars are resolved once per machine into ``~/.cache/chatmesh/<name>-<version>/lib`` (outside the
repository, so every clone shares them, and CI keeps them between runs), under a file lock so
that parallel test sessions do not fetch twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

_log = logging.getLogger("chatmesh.mesh.deps")


class JvmInstallError(RuntimeError):
    """A Java dependency could not be installed (no java, no mvn, or Maven failed)."""


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/chatmesh``, or ``~/.cache/chatmesh``: shared by every clone on the machine."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "chatmesh"


def find_java(error: type[JvmInstallError] = JvmInstallError, who: str = "java") -> Path:
    """The ``java`` to run with: ``$JAVA_HOME/bin/java``, else the one on ``PATH``.

    Raises:
        error: no java executable was found.
    """
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return Path(java_home) / "bin" / "java"
    found = shutil.which("java")
    if found is None:
        raise error(f"{who}: `java` not found (install a Java 17 JDK or set JAVA_HOME)")
    return Path(found)


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the block."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def copy_dependencies(
    pom_source: Path,
    root: Path,
    lib: Path,
    properties: Mapping[str, str],
    expected_jar: str,
    *,
    who: str,
    error: type[JvmInstallError] = JvmInstallError,
) -> list[str]:
    """Resolve ``pom_source``'s runtime dependencies with Maven into ``lib``; return the jar names.

    The pom is copied next to the jars, rather than used in place, so that Maven never writes
    into the repository and the cache records how it was made. The jars land in a staging
    directory that replaces ``lib`` only once Maven succeeded.

    Raises:
        error: mvn is missing, Maven failed, or ``expected_jar`` is not among the jars.
    """
    mvn = shutil.which("mvn")
    if mvn is None:
        raise error(f"{who}: `mvn` not found; Maven is needed once to fetch the jars")
    pom = root / "pom.xml"
    shutil.copyfile(pom_source, pom)
    staging = root / "lib.partial"
    shutil.rmtree(staging, ignore_errors=True)
    argv = [
        mvn,
        "--batch-mode",
        "--quiet",
        "-Dstyle.color=never",
        "--file",
        str(pom),
        *(f"-D{key}={value}" for key, value in properties.items()),
        f"-Dlib.dir={staging}",
        "dependency:copy-dependencies",
    ]
    _log.info("%s: fetching jars with Maven", who)
    result = subprocess.run(argv, cwd=root, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-15:]
        raise error(f"{who}: Maven could not fetch the jars (exit {result.returncode}):\n" + "\n".join(tail))
    jars = sorted(jar.name for jar in staging.glob("*.jar"))
    if expected_jar not in jars:
        raise error(f"{who}: Maven finished but {expected_jar} is missing from {staging}")
    shutil.rmtree(lib, ignore_errors=True)
    staging.rename(lib)
    return jars
