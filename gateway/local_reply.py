"""Envoy's own refusals, answered to gRPC and gRPC-web clients as proper gRPC statuses.

A gRPC-web request is not gRPC to Envoy's local replies: it would get a plain HTTP error,
which the grpc_web filter maps by HTTP status (413 to UNKNOWN, 429 and 504 to UNAVAILABLE).
Each mapper here rewrites one such reply to HTTP 200 with an empty body and a grpc-status
header: a trailers-only gRPC answer, which grpc_web passes on as is, and which Envoy's native
gRPC local reply keeps too (it only fills grpc-status when absent).
"""

from __future__ import annotations

from typing import Any

from gateway.settings import GatewaySettings

GRPC_STATUS_DEADLINE_EXCEEDED = 4
GRPC_STATUS_RESOURCE_EXHAUSTED = 8


def _grpc_local_reply(http_status: int, grpc_status: int, message: str) -> dict[str, Any]:
    """A mapper: Envoy's own ``http_status`` answer to a (gRPC or gRPC-web) call reads ``grpc_status``."""
    return {
        "filter": {
            "and_filter": {
                "filters": [
                    {
                        "status_code_filter": {
                            "comparison": {
                                "op": "EQ",
                                "value": {"default_value": http_status, "runtime_key": f"gateway_{http_status}"},
                            }
                        }
                    },
                    # grpc_web has already turned a gRPC-web request's content-type into application/grpc.
                    {
                        "header_filter": {
                            "header": {"name": "content-type", "string_match": {"prefix": "application/grpc"}}
                        }
                    },
                ]
            }
        },
        "status_code": 200,
        "body": {"inline_string": ""},
        "headers_to_add": [
            {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
            for key, value in (
                ("content-type", "application/grpc"),
                ("grpc-status", str(grpc_status)),
                ("grpc-message", message),
            )
        ],
    }


def local_reply_config(settings: GatewaySettings) -> dict[str, Any]:
    """The connection manager's ``local_reply_config``, the same for gRPC-web and native gRPC.

    Oversized request (buffer filter, 413) and rate-limited call (429): RESOURCE_EXHAUSTED,
    as gRPC itself answers a message over its size limit. Call past its deadline or the unary
    timeout (504): DEADLINE_EXCEEDED, as native gRPC calls already get from Envoy.
    """
    too_large = f"request body larger than {settings.max_request_bytes} bytes"
    return {
        "mappers": [
            _grpc_local_reply(413, GRPC_STATUS_RESOURCE_EXHAUSTED, too_large),
            _grpc_local_reply(429, GRPC_STATUS_RESOURCE_EXHAUSTED, "rate limited"),
            _grpc_local_reply(504, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded at the gateway"),
        ]
    }
