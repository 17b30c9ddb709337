"""JSON access logs: one line per call, with the call's real gRPC status.

Two loggers share one format, because no single Envoy log sees every status:

* the router's upstream log writes every call that reached a service. It sees the service's
  own trailers, so ``grpc_status`` is right for gRPC-web too, where the downstream log cannot
  see it: the grpc_web filter moves the trailers into the response body, and Envoy then
  infers UNKNOWN (2) from HTTP 200.
* the connection manager's log writes only the calls Envoy answered itself (rate limited,
  too large, no route, no healthy upstream, deadline), whose status is in the headers.

A call that reached a service and was then cut short by Envoy (upstream timeout, reset)
gets one line from each.
"""

from __future__ import annotations

from typing import Any

from gateway.settings import GatewaySettings

# Only the request headers named here are logged: never authorization, cookie or the like.
ACCESS_LOG_FIELDS = {
    "start": "%START_TIME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(:PATH)%",
    # Of this leg: HTTP/1.1 or HTTP/2 from the client in the gateway's lines, HTTP/2 to the service in the others.
    "protocol": "%PROTOCOL%",
    "http_status": "%RESPONSE_CODE%",
    "grpc_status": "%GRPC_STATUS_NUMBER%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "flags": "%RESPONSE_FLAGS%",
    "duration_ms": "%DURATION%",
    "upstream": "%UPSTREAM_CLUSTER%",
    "upstream_host": "%UPSTREAM_HOST%",
    "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "user_agent": "%REQ(USER-AGENT)%",
}

_STDOUT_TYPE = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"
_FILE_TYPE = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
_CEL_FILTER_TYPE = "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter"


#: In the gateway's own lines: the subject of the token verified at the edge (a user id or a
#: service name), so a refused or rate-limited call says whose it was. (The router's lines
#: cannot see the connection manager's dynamic metadata.)
EDGE_USER_FIELD = {"user": "%DYNAMIC_METADATA(envoy.filters.http.jwt_authn:jwt_payload:sub)%"}


def _logger(settings: GatewaySettings, answered_by: str, fields: dict[str, str]) -> dict[str, Any]:
    log_format = {"json_format": {"answered_by": answered_by, **ACCESS_LOG_FIELDS, **fields}}
    if settings.access_log_path is None:
        config = {"@type": _STDOUT_TYPE, "log_format": log_format}
        return {"name": "envoy.access_loggers.stdout", "typed_config": config}
    return {
        "name": "envoy.access_loggers.file",
        "typed_config": {"@type": _FILE_TYPE, "path": str(settings.access_log_path), "log_format": log_format},
    }


def access_logs(settings: GatewaySettings) -> list[dict[str, Any]]:
    """The connection manager's log: calls Envoy answered without a service's response."""
    if not settings.access_log_enabled:
        return []
    sizes = {"request_bytes": "%BYTES_RECEIVED%", "response_bytes": "%BYTES_SENT%"}
    logger = _logger(settings, "gateway", {**sizes, **EDGE_USER_FIELD})
    logger["filter"] = {
        "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {"@type": _CEL_FILTER_TYPE, "expression": "response.code_details != 'via_upstream'"},
        }
    }
    return [logger]


def upstream_logs(settings: GatewaySettings) -> list[dict[str, Any]]:
    """The router's log: every call that reached a service, with the service's gRPC status."""
    if not settings.access_log_enabled:
        return []
    # Seen from the router, the request is what it sent and the response what it received.
    return [_logger(settings, "service", {"request_bytes": "%BYTES_SENT%", "response_bytes": "%BYTES_RECEIVED%"})]
