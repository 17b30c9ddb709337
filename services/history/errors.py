"""Errors of the history service.

::

    ChatmeshError (services.runtime.errors)
    ├── NotFound
    │   ├── ConversationNotFound
    │   ├── MessageNotFound
    │   └── PeerNotFound             CreateConversation with a user that has no account
    ├── PermissionDenied
    │   ├── NotAMember               reads, sends, receipts of others' conversations
    │   └── NotTheAuthor             edits and deletes of others' messages
    ├── FailedPrecondition
    │   ├── ConversationWithSelf
    │   ├── NotAnAssistantConversation
    │   └── MessageDeleted           edits of a tombstone
    ├── InvalidArgument
    │   └── BadPageToken
    ├── ResourceExhausted
    │   └── SendingTooFast
    └── Unavailable
        └── ConversationBusy         a send lost its sequence claim to other replicas too often
"""

from __future__ import annotations

from services.runtime.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)


class ConversationNotFound(NotFound):
    """No such conversation."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"conversation_id: no conversation {conversation_id}")


class MessageNotFound(NotFound):
    """No such message in the conversation."""

    def __init__(self, message_id: str) -> None:
        super().__init__(f"message_id: no message {message_id} in this conversation")


class PeerNotFound(NotFound):
    """The peer of a direct conversation is not a user of the mesh."""

    def __init__(self, user_id: str) -> None:
        super().__init__(f"peer_user_id: no user {user_id}")


class NotAMember(PermissionDenied):
    """The caller is not a member of the conversation."""

    def __init__(self) -> None:
        super().__init__("conversation_id: you are not a member of this conversation")


class NotTheAuthor(PermissionDenied):
    """Only the author may edit or delete a message."""

    def __init__(self) -> None:
        super().__init__("message_id: only its author may change a message")


class ConversationWithSelf(FailedPrecondition):
    """A direct conversation needs two different users."""

    def __init__(self) -> None:
        super().__init__("peer_user_id: a direct conversation needs another user")


class NotAnAssistantConversation(FailedPrecondition):
    """Assistant replies go only into assistant conversations."""

    def __init__(self) -> None:
        super().__init__("conversation_id: not a conversation with the assistant")


class MessageDeleted(FailedPrecondition):
    """The message is a tombstone."""

    def __init__(self) -> None:
        super().__init__("message_id: the message was deleted")


class BadPageToken(InvalidArgument):
    """The page token was not issued by this service."""

    def __init__(self) -> None:
        super().__init__("page.page_token", "not a page token issued by this service")


class SendingTooFast(ResourceExhausted):
    """The user's send rate limit is used up."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("sending too fast; retry later", retry_after_s=retry_after_s)


class ConversationBusy(Unavailable):
    """Other replicas stored message after message while this send tried to claim a sequence."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"conversation_id: conversation {conversation_id} is busy; retry")
