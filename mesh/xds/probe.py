"""Reading Envoy's admin ``/clusters``: which hosts a cluster has, in what health, with how many calls.

For tests and the scale-out benchmark. :func:`wait_first_request` measures what the
benchmark calls discovery latency: from the moment a replica says SERVING to the moment
Envoy has routed a first call to it (its ``rq_total`` above zero), under steady load.

Usage in a benchmark (the replica registers when it starts serving)::

    started = time.monotonic()
    await replica.start()  # SERVING, registered
    routed = await wait_first_request(admin_port, "history", f"{host}:{replica.port}", timeout_s=5)
    discovery_ms = (routed - started) * 1000

Envoy's stat of a host counts every call it was sent, including those that failed, so
the first request is seen even when it is refused; the admin endpoint is polled every
``poll_s`` (10 ms by default), which bounds the measurement's resolution.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from dataclasses import dataclass, field


@dataclass
class HostStats:
    """One host of one cluster as Envoy's admin shows it."""

    address: str
    """``ip:port``."""
    health_flags: str = ""
    """``healthy``, or flags such as ``/failed_active_hc/pending_dynamic_removal``."""
    rq_total: int = 0
    """Calls Envoy sent it."""
    stats: dict[str, str] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        """True when Envoy routes new calls to it."""
        return self.health_flags == "healthy"


def parse_clusters(text: str) -> dict[str, dict[str, HostStats]]:
    """The text form of ``/clusters``: cluster -> address -> host stats (cluster-wide lines skipped)."""
    clusters: dict[str, dict[str, HostStats]] = {}
    for line in text.splitlines():
        parts = line.split("::")
        if len(parts) != 4 or ":" not in parts[1]:
            continue
        cluster, address, key, value = parts
        host = clusters.setdefault(cluster, {}).setdefault(address, HostStats(address))
        host.stats[key] = value
        if key == "health_flags":
            host.health_flags = value
        elif key == "rq_total":
            host.rq_total = int(value)
    return clusters


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2.0) as response:  # noqa: S310 - loopback admin only
        body: bytes = response.read()
    return body.decode()


async def cluster_hosts(admin_port: int) -> dict[str, dict[str, HostStats]]:
    """Every cluster's hosts as Envoy sees them now."""
    return parse_clusters(await asyncio.to_thread(_get, f"http://127.0.0.1:{admin_port}/clusters"))


async def wait_first_request(
    admin_port: int, cluster: str, address: str, timeout_s: float, poll_s: float = 0.01
) -> float:
    """Wait until Envoy has sent ``cluster``'s host ``address`` a call; return ``time.monotonic()`` then.

    Raises:
        TimeoutError: no call reached it within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        host = (await cluster_hosts(admin_port)).get(cluster, {}).get(address)
        now = time.monotonic()
        if host is not None and host.rq_total > 0:
            return now
        if now > deadline:
            raise TimeoutError(f"no call routed to {cluster} {address} within {timeout_s}s")
        await asyncio.sleep(poll_s)
