"""Which client address a call came from: the gateway's word for it, when the gateway is who called.

The gateway (gateway/render.py) sets ``x-chatmesh-client-address`` to the address of the
connection it accepted, replacing whatever a client sent under that name. The header is
believed only when the peer of this call is a trusted proxy (the gateway, on loopback by
default); any other caller is known by its own address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

HEADER = "x-chatmesh-client-address"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: Sequence[str]) -> tuple[Network, ...]:
    """The trusted proxies' networks."""
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def peer_host(peer: str) -> str:
    """The address of a gRPC peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``, ``unix:...``)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return peer


def client_address(peer: str, header: str | None, trusted: Sequence[Network]) -> str:
    """The client's address: the header's if the peer is a trusted proxy and the header is an address."""
    host = peer_host(peer)
    try:
        peer_ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if header and any(peer_ip in network for network in trusted):
        try:
            return str(ipaddress.ip_address(header.strip()))
        except ValueError:
            pass
    return str(peer_ip)


def caller_address(context: object, trusted: Sequence[Network]) -> str:
    """The client address of the call served under ``context`` (a grpc.aio.ServicerContext)."""
    header = None
    for key, value in context.invocation_metadata() or ():  # type: ignore[attr-defined]
        if key == HEADER and isinstance(value, str):
            header = value
    return client_address(context.peer() or "", header, trusted)  # type: ignore[attr-defined]
