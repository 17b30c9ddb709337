"""Errors of the session service.

::

    ChatmeshError (services.runtime.errors)
    ├── AlreadyExists
    │   └── UsernameTaken
    ├── Unauthenticated
    │   ├── InvalidCredentials       wrong username or password (never says which)
    │   └── RefreshTokenRejected     unknown, expired, revoked or reused refresh token
    ├── NotFound
    │   └── DeviceNotFound
    └── ResourceExhausted
        └── TooManyLoginFailures
"""

from __future__ import annotations

from services.runtime.errors import AlreadyExists, NotFound, ResourceExhausted, Unauthenticated


class UsernameTaken(AlreadyExists):
    """Another account has this username."""

    def __init__(self) -> None:
        super().__init__("username: already taken")


class InvalidCredentials(Unauthenticated):
    """Wrong username or password."""

    def __init__(self) -> None:
        super().__init__("wrong username or password")


class RefreshTokenRejected(Unauthenticated):
    """The refresh token cannot be used (anymore)."""

    def __init__(self) -> None:
        super().__init__("refresh token invalid, expired or revoked: log in again")


class DeviceNotFound(NotFound):
    """No such device of the caller's."""

    def __init__(self, device_id: str) -> None:
        super().__init__(f"device_id: no device {device_id} on this account")


class TooManyLoginFailures(ResourceExhausted):
    """Too many failed logins from this client address (for this username, or in all): back off."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("too many failed logins; retry later", retry_after_s=retry_after_s)
