"""Render the Envoy bootstrap from :class:`GatewaySettings` and the mesh's routes.

The HTTP filter chain, in order:

1. ``grpc_web``: turns browser gRPC-web (HTTP/1.1) into gRPC for everything after it.
2. ``cors``: answers preflights itself, so they never reach the rate limit or a service.
3. ``jwt_authn`` (with ``edge_auth``): a call that needs a token and has no valid one is
   answered UNAUTHENTICATED here (``edge.py``).
4. ``local_ratelimit``: one token bucket per route (``typed_per_filter_config``), the ceiling
   of what a route takes from everyone together.
5. ``chatmesh.client_ratelimit``: one bucket per user and per client address (``edge.py``).
6. ``buffer``: caps request bodies at ``max_request_bytes`` (``max_request_bytes_overrides`` per
   package or method; disabled on client streams).
7. ``lua``: gRPC-web requests with empty, truncated or compressed frames answered
   INVALID_ARGUMENT (``frames.py``; skipped by native gRPC and on client streams).
8. ``router``.

What each timeout and connection limit protects: :mod:`gateway.limits`.

Routes: gRPC paths by package (``routes.py``), then, when ``settings.web`` is set, a
catch-all GET/HEAD route to the static site that serves the browser client. Retry-safe
unary methods get exact routes with a retry policy (``routes.py``).

Clusters: one static cluster per upstream, or, with ``settings.xds``, the service clusters
from the mesh's xDS control plane over ADS (``dynamic_resources``: CDS, then EDS per
cluster) and only the catalog, the static site and the control plane's own cluster static.
Either way a service cluster is :func:`grpc_cluster_base` (HTTP/2, gRPC health checks,
circuit breakers with a retry budget). Listeners, filters and routes are always rendered
here from the typed settings.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import yaml

from gateway.access_log import access_logs, upstream_logs
from gateway.edge import (
    CLIENT_RATE_LIMIT_FILTER,
    JWT_FILTER,
    RETRY_AFTER_HEADER,
    client_rate_limit_filter,
    edge_auth_on,
    jwt_filter,
)
from gateway.frames import LUA_FILTER, frame_check_filter
from gateway.limits import client_address_detection, connection_manager_limits, overload_manager
from gateway.local_reply import local_reply_config
from gateway.routes import ROUTE_BUCKET_STAGE, RouteSpec, duration, render_routes
from gateway.settings import CircuitBreakers, GatewaySettings, HealthCheck, StaticSite, Upstream, XdsSource

CORS_ALLOW_METHODS = "GET, PUT, DELETE, POST, OPTIONS"
CORS_ALLOW_HEADERS = (
    "keep-alive,user-agent,cache-control,content-type,content-transfer-encoding,"
    "x-accept-content-transfer-encoding,x-accept-response-streaming,x-user-agent,x-grpc-web,"
    "grpc-timeout,authorization,connect-protocol-version"
)
CORS_EXPOSE_HEADERS = f"grpc-status,grpc-message,grpc-status-details-bin,{RETRY_AFTER_HEADER}"
#: Set on every request to the connection's peer address (services trust it from the gateway only).
CLIENT_ADDRESS_HEADER = "x-chatmesh-client-address"

_HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_HTTP_OPTIONS_TYPE = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_FILTER_TYPES = {
    "envoy.filters.http.grpc_web": "type.googleapis.com/envoy.extensions.filters.http.grpc_web.v3.GrpcWeb",
    "envoy.filters.http.cors": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors",
    "envoy.filters.http.local_ratelimit": (
        "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
    ),
    "envoy.filters.http.buffer": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
    "envoy.filters.http.router": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
}


def _socket(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _cors_policy(settings: GatewaySettings) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
        "allow_origin_string_match": [{"exact": origin} for origin in settings.cors_allowed_origins],
        "allow_methods": CORS_ALLOW_METHODS,
        "allow_headers": CORS_ALLOW_HEADERS,
        "expose_headers": CORS_EXPOSE_HEADERS,
        "max_age": str(settings.cors_max_age_s),
        # A preflight from a foreign origin is answered here, without the allow-origin header a
        # browser needs, rather than forwarded to a gRPC server that cannot make sense of it.
        "forward_not_matching_preflights": False,
    }


def _http_filters(settings: GatewaySettings) -> list[dict[str, Any]]:
    filters: list[dict[str, Any]] = [
        {
            "name": "envoy.filters.http.grpc_web",
            "typed_config": {"@type": _FILTER_TYPES["envoy.filters.http.grpc_web"]},
        },
        {"name": "envoy.filters.http.cors", "typed_config": {"@type": _FILTER_TYPES["envoy.filters.http.cors"]}},
    ]
    if edge_auth_on(settings):
        assert settings.edge_auth is not None
        filters.append({"name": JWT_FILTER, "typed_config": jwt_filter(settings.edge_auth)})
    filters.append(
        {
            "name": "envoy.filters.http.local_ratelimit",
            "typed_config": {
                "@type": _FILTER_TYPES["envoy.filters.http.local_ratelimit"],
                # No bucket here: each route brings its own (routes.py); a route without one is unlimited.
                "stat_prefix": "gateway_rate_limit",
                "stage": ROUTE_BUCKET_STAGE,
                "rate_limited_as_resource_exhausted": True,
            },
        }
    )
    if settings.client_rate_limits.enabled:
        filters.append({"name": CLIENT_RATE_LIMIT_FILTER, "typed_config": client_rate_limit_filter(settings)})
    filters += [
        {
            "name": "envoy.filters.http.buffer",
            "typed_config": {
                "@type": _FILTER_TYPES["envoy.filters.http.buffer"],
                "max_request_bytes": settings.max_request_bytes,
            },
        },
        {"name": LUA_FILTER, "typed_config": frame_check_filter()},
        {
            "name": "envoy.filters.http.router",
            "typed_config": {
                "@type": _FILTER_TYPES["envoy.filters.http.router"],
                # Internal x-envoy-* response headers tell a browser nothing it needs.
                "suppress_envoy_headers": True,
                "upstream_log": upstream_logs(settings),
            },
        },
    ]
    return filters


def _connection_manager(settings: GatewaySettings, routes: list[RouteSpec]) -> dict[str, Any]:
    return {
        "@type": _HCM_TYPE,
        "stat_prefix": "gateway",
        # AUTO serves HTTP/1.1 (browsers, gRPC-web) and prior-knowledge h2c (grpcurl, SDKs) on one port.
        "codec_type": "AUTO",
        **client_address_detection(settings),
        "normalize_path": True,
        "merge_slashes": True,
        "generate_request_id": True,
        "server_name": settings.server_name,
        **connection_manager_limits(settings),
        "route_config": {
            "name": "gateway",
            # Routes to xDS clusters are rendered before CDS brings them: a call meanwhile is
            # UNAVAILABLE (no cluster) rather than the whole bootstrap refused.
            "validate_clusters": settings.xds is None,
            "virtual_hosts": [
                {
                    "name": "mesh",
                    "domains": ["*"],
                    "routes": render_routes(settings, routes),
                    "typed_per_filter_config": {"envoy.filters.http.cors": _cors_policy(settings)},
                    # The address of the connection Envoy accepted, for per-client limits
                    # (forms' anonymous submits): replaces whatever a client sent under that name.
                    "request_headers_to_add": [
                        {
                            "header": {
                                "key": CLIENT_ADDRESS_HEADER,
                                "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
                            },
                            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                        }
                    ],
                }
            ],
        },
        "http_filters": _http_filters(settings),
        "local_reply_config": local_reply_config(settings),
        "access_log": access_logs(settings),
    }


def _health_checks(check: HealthCheck, health_service: str) -> list[dict[str, Any]]:
    if not check.enabled:
        return []
    return [
        {
            "timeout": duration(check.timeout_s),
            "interval": duration(check.interval_s),
            # Without traffic Envoy would check only once a minute; a restarted service would
            # then stay marked down long after it is back.
            "no_traffic_interval": duration(check.interval_s),
            "healthy_threshold": check.healthy_threshold,
            "unhealthy_threshold": check.unhealthy_threshold,
            "grpc_health_check": {"service_name": health_service},
        }
    ]


def _thresholds(breakers: CircuitBreakers) -> dict[str, Any]:
    threshold: dict[str, Any] = {
        "priority": "DEFAULT",
        "max_connections": breakers.max_connections,
        "max_pending_requests": breakers.max_pending_requests,
        "max_requests": breakers.max_requests,
        "max_retries": breakers.max_retries,
    }
    if breakers.retry_budget_percent is not None:
        # With a budget Envoy ignores max_retries: retries may be this share of the calls in flight.
        threshold["retry_budget"] = {
            "budget_percent": {"value": breakers.retry_budget_percent},
            "min_retry_concurrency": breakers.retry_min_concurrency,
        }
    return {"thresholds": [threshold]}


def _http2_options() -> dict[str, Any]:
    return {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": _HTTP_OPTIONS_TYPE,
            # gRPC needs HTTP/2 upstream; pings find a dead server under a quiet long stream.
            "explicit_http_config": {
                "http2_protocol_options": {"connection_keepalive": {"interval": "30s", "timeout": "5s"}}
            },
        }
    }


def grpc_cluster_base(
    name: str,
    health_service: str,
    *,
    health_check: HealthCheck,
    circuit_breakers: CircuitBreakers,
    connect_timeout_s: float,
    lb_policy: str = "ROUND_ROBIN",
) -> dict[str, Any]:
    """What every gRPC service cluster has, static or from xDS: HTTP/2, health checks, limits.

    The xDS control plane (:mod:`mesh.xds.resources`) builds its CDS clusters from this too,
    so a cluster behaves the same whichever way Envoy learns of it.

    Args:
        name: cluster name.
        health_service: full service name asked by the gRPC health check ("" the whole server).
        health_check: active health check settings.
        circuit_breakers: limits, and the retry budget.
        connect_timeout_s: TCP connect timeout.
        lb_policy: Envoy's load balancing policy.

    Returns:
        The cluster without ``type`` and endpoints.
    """
    return {
        "name": name,
        "connect_timeout": duration(connect_timeout_s),
        "lb_policy": lb_policy,
        "typed_extension_protocol_options": _http2_options(),
        "circuit_breakers": _thresholds(circuit_breakers),
        "health_checks": _health_checks(health_check, health_service),
        "common_lb_config": {"healthy_panic_threshold": {"value": health_check.panic_threshold_percent}},
        "outlier_detection": _outlier_detection(),
    }


def _outlier_detection() -> dict[str, Any]:
    """Eject a replica Envoy cannot connect to, at once, until health checks or EDS speak again.

    A SIGKILLed replica refuses connections before any health check or TTL notices, and
    least-request favours it (it has no call in flight): without ejection a retry could land on
    it again. Two connect failures in a row (local-origin errors) eject it for 5 s, doubling
    while it stays dead; answers a replica gives eject nothing (Envoy counts a gRPC UNAVAILABLE
    as a 5xx: those ejections are off, as is success-rate ejection), and the last replica of a
    cluster is never ejected (at most half of them are).
    """
    return {
        "split_external_local_origin_errors": True,
        "consecutive_local_origin_failure": 2,
        "enforcing_consecutive_local_origin_failure": 100,
        "enforcing_local_origin_success_rate": 0,
        "enforcing_consecutive_5xx": 0,
        "enforcing_consecutive_gateway_failure": 0,
        "enforcing_success_rate": 0,
        "interval": "1s",
        "base_ejection_time": "5s",
        "max_ejection_percent": 50,
    }


def _cluster(settings: GatewaySettings, upstream: Upstream) -> dict[str, Any]:
    cluster: dict[str, Any] = grpc_cluster_base(
        upstream.name,
        upstream.health_service,
        health_check=settings.health_check,
        circuit_breakers=settings.circuit_breakers,
        connect_timeout_s=settings.connect_timeout_s,
    )
    cluster["type"] = "STATIC" if _is_ip(upstream.host) else "STRICT_DNS"
    cluster["load_assignment"] = {
        "cluster_name": upstream.name,
        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket(upstream.host, upstream.port)}}]}],
    }
    if cluster["type"] == "STRICT_DNS":
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    return cluster


def _xds_cluster(settings: GatewaySettings, source: XdsSource) -> dict[str, Any]:
    """The static cluster of the xDS control plane: HTTP/2, and no health check of its own (the
    ADS stream's reconnects are the check)."""
    cluster: dict[str, Any] = {
        "name": source.cluster_name,
        "type": "STATIC" if _is_ip(source.host) else "STRICT_DNS",
        "connect_timeout": duration(settings.connect_timeout_s),
        "load_assignment": {
            "cluster_name": source.cluster_name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket(source.host, source.port)}}]}],
        },
        "typed_extension_protocol_options": _http2_options(),
    }
    if cluster["type"] == "STRICT_DNS":
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    return cluster


def _dynamic_resources(source: XdsSource) -> dict[str, Any]:
    """ADS over gRPC to the control plane; the clusters (CDS) and their endpoints (EDS) through it."""
    return {
        "ads_config": {
            "api_type": "GRPC",
            "transport_api_version": "V3",
            "grpc_services": [
                {
                    "envoy_grpc": {
                        "cluster_name": source.cluster_name,
                        # Envoy's own back-off grows to 30 s: a control plane back after a short
                        # outage would wait that long to be asked again.
                        "retry_policy": {
                            "retry_back_off": {
                                "base_interval": duration(source.reconnect_base_s),
                                "max_interval": duration(source.reconnect_max_s),
                            }
                        },
                    }
                }
            ],
            "set_node_on_first_message_only": True,
        },
        "cds_config": {
            "ads": {},
            "resource_api_version": "V3",
            "initial_fetch_timeout": duration(source.initial_fetch_timeout_s),
        },
    }


def _static_cluster(settings: GatewaySettings, site: StaticSite) -> dict[str, Any]:
    """The static site's cluster: plain HTTP/1.1, checked with GET ``health_path``."""
    check = settings.health_check
    cluster: dict[str, Any] = {
        "name": site.name,
        "type": "STATIC" if _is_ip(site.host) else "STRICT_DNS",
        "connect_timeout": duration(settings.connect_timeout_s),
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": site.name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket(site.host, site.port)}}]}],
        },
        "health_checks": [
            {
                "timeout": duration(check.timeout_s),
                "interval": duration(check.interval_s),
                "no_traffic_interval": duration(check.interval_s),
                "healthy_threshold": check.healthy_threshold,
                "unhealthy_threshold": check.unhealthy_threshold,
                "http_health_check": {"path": site.health_path},
            }
        ]
        if check.enabled
        else [],
        "common_lb_config": {"healthy_panic_threshold": {"value": check.panic_threshold_percent}},
    }
    if cluster["type"] == "STRICT_DNS":
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    return cluster


def render(settings: GatewaySettings, routes: list[RouteSpec]) -> dict[str, Any]:
    """Build the Envoy bootstrap.

    Args:
        settings: the gateway settings.
        routes: one RouteSpec per package that needs more than a plain prefix route (streaming
            methods, or a cluster other than the upstream declaring the package). Reflection
            and grpc.health.v1 routes to the catalog are always added.

    Returns:
        The bootstrap as plain data, ready for YAML or JSON.

    Raises:
        ValueError: the routes and settings disagree (unknown cluster, duplicate package...).
    """
    # With xDS the service clusters come from the control plane; the catalog stays static.
    upstreams = [settings.catalog] if settings.xds else [*settings.upstreams, settings.catalog]
    clusters = [_cluster(settings, u) for u in upstreams]
    clusters += [_static_cluster(settings, settings.web)] if settings.web else []
    clusters += [_xds_cluster(settings, settings.xds)] if settings.xds else []
    config: dict[str, Any] = {
        "admin": {
            # The admin interface can stop the server and dump its config: loopback only, always.
            "address": _socket("127.0.0.1", settings.admin_port),
        },
        "static_resources": {
            "listeners": [
                {
                    "name": "gateway",
                    "address": _socket(settings.host, settings.port),
                    "per_connection_buffer_limit_bytes": 32_768,
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": _connection_manager(settings, routes),
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": clusters,
        },
        "overload_manager": overload_manager(settings),
    }
    if settings.xds:
        config["node"] = {"id": settings.node_id, "cluster": "chatmesh-gateway"}
        config["dynamic_resources"] = _dynamic_resources(settings.xds)
    return config


class _PlainDumper(yaml.SafeDumper):
    """Writes shared sub-dicts out in full instead of as YAML anchors and aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def write_config(settings: GatewaySettings, routes: list[RouteSpec], path: Path) -> Path:
    """Render the bootstrap and write it to ``path`` as YAML (parents created).

    Returns:
        ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.dump(render(settings, routes), Dumper=_PlainDumper, sort_keys=False, default_flow_style=False)
    path.write_text(text, encoding="utf-8")
    return path
