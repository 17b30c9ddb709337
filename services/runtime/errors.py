"""Domain errors that every service raises, and the gRPC status each one maps to.

The tree (services subclass these in their own ``errors.py``)::

    ChatmeshError
    ├── InvalidArgument       INVALID_ARGUMENT    (names the field)
    ├── Unauthenticated       UNAUTHENTICATED
    ├── PermissionDenied      PERMISSION_DENIED
    ├── NotFound              NOT_FOUND
    ├── AlreadyExists         ALREADY_EXISTS
    ├── ResourceExhausted     RESOURCE_EXHAUSTED  (retry_after_s -> `retry-after-ms`)
    ├── FailedPrecondition    FAILED_PRECONDITION
    └── Unavailable           UNAVAILABLE         (a dependency is down; retry)

Domain modules raise these and know nothing of gRPC; the error interceptor in
:mod:`services.runtime.interceptors` turns them into statuses.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc


class ChatmeshError(Exception):
    """Base of every error a caller may see. ``str(error)`` is safe to show them."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN


class InvalidArgument(ChatmeshError):
    """A request field breaks its rule.

    ``violations`` (field, problem) pairs, when given, list every broken field: the error
    interceptor sends them as google.rpc.BadRequest field violations in the status details.
    """

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str, violations: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
        self.violations = tuple(violations)


class Unauthenticated(ChatmeshError):
    """No valid credentials."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ChatmeshError):
    """Authenticated, but not allowed."""

    code = grpc.StatusCode.PERMISSION_DENIED


class NotFound(ChatmeshError):
    """The id names nothing the caller can see."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ChatmeshError):
    """A create collided with something that exists."""

    code = grpc.StatusCode.ALREADY_EXISTS


class ResourceExhausted(ChatmeshError):
    """A quota, queue or rate limit was hit."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class FailedPrecondition(ChatmeshError):
    """The target is in the wrong state for the call."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(ChatmeshError):
    """A dependency is down or the service is draining; the caller should retry."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ChatmeshError):
    """The call ran past its deadline (the client's, or the service default)."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
