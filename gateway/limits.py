"""What bounds a client's hold on the gateway, and what each bound protects.

A call costs the mesh while it is open, not only while it computes: a call that sends its
headers and never its message holds an HTTP/2 stream, Envoy memory and (without the buffer
filter) one of a service's concurrent-RPC slots. Each limit below closes one way of holding
on without paying for it:

``request_headers_timeout_s`` (connection manager ``request_headers_timeout``, 5 s)
    A new call's headers must be complete within it. Protects the listener from slowloris
    clients that open connections and dribble header bytes.

``request_idle_timeout_s`` (unary routes' ``idle_timeout``, 5 s; per package or method in
``request_idle_timeout_overrides`` for RPCs that compute longer before answering)
    A unary call with no byte either way for this long ends with DEADLINE_EXCEEDED. A call
    whose headers came without its message is gone in seconds instead of the 30 s unary
    timeout, so a few thousand such calls cannot pile up; the buffer filter holds such a
    call in Envoy, so it never takes a service's slot meanwhile.

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

``per_connection_buffer_limit_bytes`` (32 KiB) and ``max_request_bytes`` (1 MiB)
    How much one connection may have buffered in flight, and the largest request body.

Per client, not per connection (see :mod:`gateway.edge`): calls per second per user and
per client address. Envoy has no count of open calls per user or per address; the rate
limit bounds it instead, since a call that stops sending dies at the idle timeout: an
address holds at most about ``burst + per_second * request_idle_timeout_s`` silent unary
calls (200 with the defaults). Streams per user are bounded by the services (per-caller
concurrency, see services/runtime).
"""

from __future__ import annotations

from typing import Any

from gateway.settings import GatewaySettings

_CONNECTIONS_MONITOR_TYPE = (
    "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig"
)


def _seconds(value: float) -> str:
    return f"{int(value)}s" if float(value).is_integer() else f"{value:.3f}s"


def connection_manager_limits(settings: GatewaySettings) -> dict[str, Any]:
    """The connection manager's timeouts and HTTP/2 limits (merged into its config)."""
    return {
        "stream_idle_timeout": _seconds(settings.stream_idle_timeout_s),
        # Streams have no total timeout here; routes set theirs.
        "request_timeout": "0s",
        "request_headers_timeout": _seconds(settings.request_headers_timeout_s),
        "common_http_protocol_options": {"idle_timeout": "3600s", "headers_with_underscores_action": "DROP_HEADER"},
        "http2_protocol_options": {
            "max_concurrent_streams": settings.max_concurrent_streams,
            "initial_stream_window_size": 65_536,
            "initial_connection_window_size": 1_048_576,
        },
    }


def overload_manager(settings: GatewaySettings) -> dict[str, Any]:
    """The overload manager: a ceiling on downstream connections across all listeners."""
    return {
        "resource_monitors": [
            {
                "name": "envoy.resource_monitors.global_downstream_max_connections",
                "typed_config": {
                    "@type": _CONNECTIONS_MONITOR_TYPE,
                    "max_active_downstream_connections": settings.max_downstream_connections,
                },
            }
        ]
    }
