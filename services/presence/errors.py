"""Errors of the presence service.

::

    ChatmeshError (services.runtime.errors)
    ├── InvalidArgument
    │   └── UnusableId              a user or device id that cannot name a KV key
    ├── ResourceExhausted
    │   ├── HeartbeatTooFrequent    a device's heartbeats closer than the minimum interval
    │   ├── TypingTooFrequent       more SetTyping calls a second than a user may make
    │   └── TooManyWatches          this replica serves its most WatchPresence streams
    └── Unavailable
        └── LastSeenUnavailable     CQL did not answer a last-seen read

History's answers to SetTyping's membership check (NOT_FOUND, PERMISSION_DENIED...) reach
the caller as history gave them: services.runtime.peers.
"""

from __future__ import annotations

from services.runtime.errors import (
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)


class UnusableId(InvalidArgument):
    """An id with characters a KV key cannot hold (ids are UUIDs)."""

    def __init__(self, field: str) -> None:
        super().__init__(field, "must be a UUID")


class HeartbeatTooFrequent(ResourceExhausted):
    """The device sent heartbeats faster than the minimum interval."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("heartbeats come too fast for this device; wait before the next", retry_after_s)


class TypingTooFrequent(ResourceExhausted):
    """The user called SetTyping faster than allowed."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("SetTyping calls come too fast; wait before the next", retry_after_s)


class TooManyWatches(ResourceExhausted):
    """This replica serves as many WatchPresence streams as it may."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"this replica serves its most WatchPresence streams ({limit}); retry shortly", 1.0)


class LastSeenUnavailable(Unavailable):
    """CQL could not answer a last-seen read."""

    def __init__(self) -> None:
        super().__init__("last seen unavailable: the database did not answer; retry")
