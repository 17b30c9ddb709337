"""What bounds a client's hold on the gateway, and what each bound protects.

A call costs the mesh while it is open, not only while it computes: a call that sends its
headers and never its message holds an HTTP/2 stream, Envoy memory and (without the buffer
filter) one of a service's concurrent-RPC slots. Each limit below closes one way of holding
on without paying for it:

``request_headers_timeout_s`` (connection manager ``request_headers_timeout``, 5 s)
    A new call's headers must be complete within it. Protects the listener from slowloris
    clients that open connections and dribble header bytes.

``request_timeout_s`` (connection manager ``request_timeout``, 10 s)
    A call's request must have arrived within it, unless the service has begun answering:
    for unary and server-streaming calls, the headers and their one message. A call that
    sent its headers and never its message (a unary call, or a Connect or WatchPresence
    that would otherwise wait out the 300 s stream idle timeout) ends with
    DEADLINE_EXCEEDED, so a few thousand such calls cannot pile up; the buffer filter holds
    such a call in Envoy, so it never takes a service's slot meanwhile. Client streams
    (StreamUpsert, UploadSource, reflection) are exempt once their service has sent its
    response headers, which their servicers do at once: a long upload is not cut.

``unary_timeout_s`` (route ``max_stream_duration``, 30 s)
    The longest a unary call may take, whatever bytes flow.

``stream_idle_timeout_s`` (300 s)
    A server stream (Connect, WatchPresence, Reply) with nothing either way for this long is
    reset: a client gone without closing frees its stream. Streams have no total limit.

``max_concurrent_streams`` (256 per HTTP/2 connection)
    Calls one connection may have open at once; more wait in the client. Bounds what a single
    connection can hold, whatever its calls do.

``max_downstream_connections`` (overload manager, 10,000 in all)
    Connections the gateway accepts; past it new connections are refused before any of
    their bytes is read, so Envoy's memory stays bounded.

``max_heap_bytes`` (overload manager, 1 GiB)
    Past 90% of it Envoy returns freed memory to the system; past 95% it answers new calls
    UNAVAILABLE (clients retry) instead of growing until the kernel kills it, whatever
    held the memory (thousands of open streams, slow readers).

``per_connection_buffer_limit_bytes`` (32 KiB) and ``max_request_bytes`` (1 MiB)
    How much one connection may have buffered in flight, and the largest request body.

``trusted_proxies`` (none by default)
    Whose ``x-forwarded-for`` the gateway believes. Anyone else's is ignored, so a client
    cannot pick the address its per-address bucket (or a service's per-address limits, via
    ``x-chatmesh-client-address``) is counted under.

Per client, not per connection (see :mod:`gateway.edge`): calls per second per user and
per client address. Envoy has no count of open calls per user or per address; the rate
limit bounds it instead, since a call that never sends its message dies at the request
timeout: an address holds at most about ``burst + per_second * request_timeout_s`` such
calls (300 with the defaults). Streams per user are bounded by the services (per-caller
concurrency, see services/runtime).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from gateway.settings import GatewaySettings

_HEAP_MONITOR = "envoy.resource_monitors.fixed_heap"
_HEAP_MONITOR_TYPE = "type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig"
_XFF_TYPE = "type.googleapis.com/envoy.extensions.http.original_ip_detection.xff.v3.XffConfig"
_CONNECTIONS_MONITOR_TYPE = (
    "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig"
)


def _seconds(value: float) -> str:
    return f"{int(value)}s" if float(value).is_integer() else f"{value:.3f}s"


def connection_manager_limits(settings: GatewaySettings) -> dict[str, Any]:
    """The connection manager's timeouts and HTTP/2 limits (merged into its config)."""
    return {
        "stream_idle_timeout": _seconds(settings.stream_idle_timeout_s),
        # Until the request is in or the response begun; totals are the routes' (streams have none).
        "request_timeout": _seconds(settings.request_timeout_s),
        "request_headers_timeout": _seconds(settings.request_headers_timeout_s),
        "common_http_protocol_options": {"idle_timeout": "3600s", "headers_with_underscores_action": "DROP_HEADER"},
        "http2_protocol_options": {
            "max_concurrent_streams": settings.max_concurrent_streams,
            "initial_stream_window_size": 65_536,
            "initial_connection_window_size": 1_048_576,
        },
    }


def client_address_detection(settings: GatewaySettings) -> dict[str, Any]:
    """Whose address a call is: the connection's, or the one a trusted proxy put in x-forwarded-for."""
    if not settings.trusted_proxies:
        # The connection's peer; a client's own x-forwarded-for is ignored.
        return {"use_remote_address": True}
    networks = [ipaddress.ip_network(cidr) for cidr in settings.trusted_proxies]
    cidrs = [{"address_prefix": str(n.network_address), "prefix_len": n.prefixlen} for n in networks]
    xff = {"@type": _XFF_TYPE, "xff_trusted_cidrs": {"cidrs": cidrs}}
    return {
        "use_remote_address": False,
        "original_ip_detection_extensions": [{"name": "envoy.http.original_ip_detection.xff", "typed_config": xff}],
    }


def overload_manager(settings: GatewaySettings) -> dict[str, Any]:
    """The overload manager: a ceiling on downstream connections, and on Envoy's heap."""
    return {
        "refresh_interval": "0.250s",
        "resource_monitors": [
            {
                "name": "envoy.resource_monitors.global_downstream_max_connections",
                "typed_config": {
                    "@type": _CONNECTIONS_MONITOR_TYPE,
                    "max_active_downstream_connections": settings.max_downstream_connections,
                },
            },
            {
                "name": _HEAP_MONITOR,
                "typed_config": {"@type": _HEAP_MONITOR_TYPE, "max_heap_size_bytes": settings.max_heap_bytes},
            },
        ],
        "actions": [
            {
                "name": "envoy.overload_actions.shrink_heap",
                "triggers": [{"name": _HEAP_MONITOR, "threshold": {"value": 0.90}}],
            },
            {
                "name": "envoy.overload_actions.stop_accepting_requests",
                "triggers": [{"name": _HEAP_MONITOR, "threshold": {"value": 0.95}}],
            },
        ],
    }
