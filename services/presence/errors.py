"""Errors of the presence service.

::

    ChatmeshError (services.runtime.errors)
    ├── InvalidArgument
    │   └── UnusableId              a user or device id that cannot name a KV key
    ├── Unauthenticated
    │   └── HistoryRejectedToken    history did not accept the caller's token (forwarded)
    ├── PermissionDenied
    │   └── NotAMember              SetTyping in a conversation the caller is not in
    ├── NotFound
    │   └── ConversationNotFound
    ├── ResourceExhausted
    │   ├── HeartbeatTooFrequent    a device's heartbeats closer than the minimum interval
    │   ├── TypingTooFrequent       more SetTyping calls a second than a user may make
    │   └── TooManyWatches          this replica serves its most WatchPresence streams
    └── Unavailable
        ├── HistoryUnavailable      the membership check could not reach history
        └── LastSeenUnavailable     CQL did not answer a last-seen read
"""

from __future__ import annotations

from services.runtime.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)


class UnusableId(InvalidArgument):
    """An id with characters a KV key cannot hold (ids are UUIDs)."""

    def __init__(self, field: str) -> None:
        super().__init__(field, "must be a UUID")


class HistoryRejectedToken(Unauthenticated):
    """History answered UNAUTHENTICATED to the forwarded token."""

    def __init__(self) -> None:
        super().__init__("history did not accept the access token: refresh it")


class NotAMember(PermissionDenied):
    """The caller is not a member of the conversation."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"conversation_id: not a member of conversation {conversation_id}")


class ConversationNotFound(NotFound):
    """No such conversation."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"conversation_id: no conversation {conversation_id}")


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


class HistoryUnavailable(Unavailable):
    """The history service could not answer the membership check."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"membership check failed: history unavailable ({reason}); retry")


class LastSeenUnavailable(Unavailable):
    """CQL could not answer a last-seen read."""

    def __init__(self) -> None:
        super().__init__("last seen unavailable: the database did not answer; retry")
