"""Envoy's own refusals, answered to gRPC and gRPC-web clients as proper gRPC statuses.

A gRPC-web request is not gRPC to Envoy's local replies: it would get a plain HTTP error,
which the grpc_web filter maps by HTTP status (413 to UNKNOWN, 429 and 504 to UNAVAILABLE).
Each mapper here rewrites one such reply to HTTP 200 with an empty body and a grpc-status
header: a trailers-only gRPC answer, which grpc_web passes on as is, and which Envoy's native
gRPC local reply keeps too (it only fills grpc-status when absent).
"""

from __future__ import annotations

from typing import Any

from gateway.edge import RETRY_AFTER_HEADER
from gateway.settings import GatewaySettings

GRPC_STATUS_DEADLINE_EXCEEDED = 4
GRPC_STATUS_PERMISSION_DENIED = 7
GRPC_STATUS_RESOURCE_EXHAUSTED = 8
GRPC_STATUS_UNAUTHENTICATED = 16

_CEL_FILTER_TYPE = "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter"

# The services' own words for the same refusals, so a client sees one message wherever it was refused.
MISSING_TOKEN = "missing access token: send `authorization: Bearer <token>`"
EXPIRED_TOKEN = "access token expired: refresh it"
INVALID_TOKEN = "access token invalid"
INTERNAL_METHOD = "this method is internal to the mesh: only its services may call it"


def _grpc_local_reply(
    http_status: int, grpc_status: int, message: str, *, details: str | None = None, extra: dict[str, str] | None = None
) -> dict[str, Any]:
    """A mapper: Envoy's own ``http_status`` answer to a (gRPC or gRPC-web) call reads ``grpc_status``.

    ``details``, when given, must occur in the reply's response code details (which filter
    refused and why, e.g. ``jwt_authn_access_denied{Jwt_is_expired}``).
    """
    filters: list[dict[str, Any]] = [
        {
            "status_code_filter": {
                "comparison": {
                    "op": "EQ",
                    "value": {"default_value": http_status, "runtime_key": f"gateway_{http_status}"},
                }
            }
        },
        # grpc_web has already turned a gRPC-web request's content-type into application/grpc.
        {"header_filter": {"header": {"name": "content-type", "string_match": {"prefix": "application/grpc"}}}},
    ]
    if details is not None:
        expression = f"response.code_details.contains('{details}')"
        filters.append(
            {
                "extension_filter": {
                    "name": "envoy.access_loggers.extension_filters.cel",
                    "typed_config": {"@type": _CEL_FILTER_TYPE, "expression": expression},
                }
            }
        )
    headers = {
        "content-type": "application/grpc",
        "grpc-status": str(grpc_status),
        "grpc-message": message,
        **(extra or {}),
    }
    return {
        "filter": {"and_filter": {"filters": filters}},
        "status_code": 200,
        "body": {"inline_string": ""},
        "headers_to_add": [
            {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
            for key, value in headers.items()
        ],
    }


def local_reply_config(settings: GatewaySettings) -> dict[str, Any]:
    """The connection manager's ``local_reply_config``, the same for gRPC-web and native gRPC.

    Oversized request (buffer filter, 413) and rate-limited call (429): RESOURCE_EXHAUSTED,
    as gRPC itself answers a message over its size limit; the rate limiters add
    ``retry-after-ms`` (their refill interval) themselves. Call past its deadline or the
    unary timeout (504), or idle before its message came (408): DEADLINE_EXCEEDED, as
    native gRPC calls already get from Envoy. No valid token where one is needed
    (jwt_authn's 401): UNAUTHENTICATED, saying whether it was missing, expired (refresh
    it) or invalid. An internal method (its route's 403): PERMISSION_DENIED.
    """
    too_large = f"request body larger than {settings.max_request_bytes} bytes"
    return {
        "mappers": [
            _grpc_local_reply(413, GRPC_STATUS_RESOURCE_EXHAUSTED, too_large),
            _grpc_local_reply(
                429,
                GRPC_STATUS_RESOURCE_EXHAUSTED,
                f"rate limited: retry after the milliseconds in {RETRY_AFTER_HEADER}",
            ),
            _grpc_local_reply(504, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded at the gateway"),
            _grpc_local_reply(408, GRPC_STATUS_DEADLINE_EXCEEDED, "request not received in time"),
            _grpc_local_reply(401, GRPC_STATUS_UNAUTHENTICATED, MISSING_TOKEN, details="Jwt_is_missing"),
            _grpc_local_reply(401, GRPC_STATUS_UNAUTHENTICATED, EXPIRED_TOKEN, details="Jwt_is_expired"),
            _grpc_local_reply(401, GRPC_STATUS_UNAUTHENTICATED, INVALID_TOKEN),
            _grpc_local_reply(403, GRPC_STATUS_PERMISSION_DENIED, INTERNAL_METHOD),
        ]
    }
