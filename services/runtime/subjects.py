"""NATS subjects shared by the services (see proto/chatmesh/events/v1/events.proto).

Subjects carry ids, never free text. One place names them, so a publisher and its
subscribers can't drift apart.
"""

from __future__ import annotations

CHAT_STREAM = "CHAT"
"""JetStream stream holding every user's replayable events."""

_CHAT_PREFIX = "chat.user."

CHAT_SUBJECTS = _CHAT_PREFIX + ">"
"""Every user's replayable events: the subjects of the CHAT stream."""

HEARTBEAT_SUBJECT = "presence.heartbeat"
"""DeviceHeartbeat from session for devices that hold Connect open."""

DELIVERED_SUBJECT = "history.delivered"
"""DeliveryReceipt from session when a device got another member's message."""


def chat_subject(user_id: str) -> str:
    """A user's replayable events (messages, receipts): JetStream stream CHAT."""
    return _CHAT_PREFIX + user_id


def chat_subject_user(subject: str) -> str:
    """The user id of a :func:`chat_subject` (empty for any other subject)."""
    return subject[len(_CHAT_PREFIX) :] if subject.startswith(_CHAT_PREFIX) else ""


def live_subject(user_id: str) -> str:
    """A user's ephemeral events (typing, assistant tokens): core NATS, never replayed."""
    return f"live.user.{user_id}"


def presence_changed_subject(user_id: str) -> str:
    """A user's presence changes: core NATS."""
    return f"presence.changed.{user_id}"
