"""Errors of the inference service.

::

    ChatmeshError (services.runtime.errors)
    ├── InvalidArgument
    │   └── PromptTooLong            the prompt (or a text to embed) does not fit the context
    ├── NotFound
    │   └── UnknownModel             no model by that name (names `model`)
    ├── AlreadyExists
    │   └── RequestIdInUse           the caller already has a queued or running request with that id
    ├── FailedPrecondition
    │   ├── ModelCannotGenerate      an embedding-only model asked to generate
    │   ├── NotAnAssistantConversation
    │   └── ReplyAlreadyRunning      one reply at a time per conversation
    ├── ResourceExhausted
    │   ├── QueueFull                every slot busy and the queue full (retry_after_s)
    │   │   └── QueueFullEvicted     a waiter made room for a user with a smaller share
    │   └── UserQueueFull            the caller has their most requests waiting (retry_after_s)
    └── Unavailable
        └── Draining                 the service is stopping

History's answers to calls made with the caller's token (NOT_FOUND, PERMISSION_DENIED,
UNAUTHENTICATED...) reach the caller as history gave them: services.runtime.peers.
"""

from __future__ import annotations

from services.runtime.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)


class PromptTooLong(InvalidArgument):
    """The prompt leaves no room to generate in the model's context, or a text exceeds it."""

    def __init__(self, field: str, tokens: int, limit: int) -> None:
        super().__init__(field, f"{tokens} tokens do not fit the model's context ({limit} tokens)")


class UnknownModel(NotFound):
    """No model has that name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"model: no model named {name!r} (see ListModels)")


class RequestIdInUse(AlreadyExists):
    """The caller has a queued or running request with this id."""

    def __init__(self, request_id: str) -> None:
        super().__init__(f"request_id: {request_id!r} is already used by one of your running requests")


class ModelCannotGenerate(FailedPrecondition):
    """The model is embedding-only."""

    def __init__(self, name: str) -> None:
        super().__init__(f"model: {name!r} cannot generate text")


class NotAnAssistantConversation(FailedPrecondition):
    """Reply was asked for a conversation between people."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"conversation_id: {conversation_id} is not an assistant conversation")


class ReplyAlreadyRunning(FailedPrecondition):
    """A reply for this conversation is being generated."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"conversation_id: a reply for {conversation_id} is already running")


class QueueFull(ResourceExhausted):
    """Every slot is busy and the queue in front of them is full."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("every generation slot is busy and the queue is full; retry later", retry_after_s)


class QueueFullEvicted(QueueFull):
    """A waiting request gave its place in a full queue to a user holding a smaller share."""

    def __init__(self, retry_after_s: float) -> None:
        ResourceExhausted.__init__(
            self,
            "the queue is full and you hold the largest share of it: this request gave way to another user's; "
            "retry later",
            retry_after_s,
        )


class UserQueueFull(ResourceExhausted):
    """The caller already has as many requests waiting as one user may."""

    def __init__(self, running: int, waiting: int, retry_after_s: float) -> None:
        super().__init__(
            f"you have {running} requests running and {waiting} waiting, the most one user may have; "
            "wait for one to finish or cancel one, then retry",
            retry_after_s,
        )


class Draining(Unavailable):
    """The service is stopping and takes no new generations."""

    def __init__(self) -> None:
        super().__init__("the inference service is stopping; retry on another replica")
