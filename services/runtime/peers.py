"""Calling another chatmesh service on the caller's behalf (their token forwarded).

The peer applies its own rules to the caller, so its verdict passes through unchanged:
NOT_FOUND, PERMISSION_DENIED, UNAUTHENTICATED, INVALID_ARGUMENT, FAILED_PRECONDITION and
RESOURCE_EXHAUSTED reach the caller with the peer's message. Anything else (the peer
down, a deadline, an internal error) is UNAVAILABLE: retry later.
"""

from __future__ import annotations

import grpc

from services.runtime.errors import (
    ChatmeshError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

_RELAYED: dict[grpc.StatusCode, type[ChatmeshError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
}


def forwarded(credentials: str) -> tuple[tuple[str, str]]:
    """Call metadata carrying the caller's ``authorization`` value."""
    return (("authorization", credentials),)


def relayed_error(exc: grpc.aio.AioRpcError, peer: str) -> ChatmeshError:
    """The error to raise to our caller for ``peer``'s failed answer."""
    code = exc.code()
    details = exc.details() or f"{peer} refused the call"
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        field, _, problem = details.partition(": ")
        return InvalidArgument(field, problem) if problem else InvalidArgument("request", details)
    relayed = _RELAYED.get(code)
    if relayed is not None:
        return relayed(details)
    return Unavailable(f"{peer} unavailable ({code.name}); retry")


def retry_after_s(exc: grpc.aio.AioRpcError) -> float | None:
    """The peer's ``retry-after-ms`` hint in seconds, if it sent a well-formed one."""
    value = next((v for k, v in exc.trailing_metadata() or () if k == "retry-after-ms"), None)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 9:
        return int(value) / 1000
    return None
