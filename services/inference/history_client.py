"""The history service as Reply needs it: the conversation, its newest messages, storing the reply.

Reads forward the caller's own ``authorization``, so history applies its own rule (members
only) and inference never reads more than the caller may. The reply is stored through
history's internal ``AppendAssistantMessage``, which takes only service tokens: inference
sends its own (``ServiceTokenSigner``) naming the caller in ``x-chatmesh-on-behalf-of``, and
history applies the caller's membership rule to it as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from chatmesh.common.v1 import common_pb2
from chatmesh.history.v1 import history_pb2, history_pb2_grpc
from services.inference.errors import NotAnAssistantConversation
from services.inference.grounding import Citation
from services.runtime.channels import peer_channel
from services.runtime.interceptors import ON_BEHALF_OF
from services.runtime.peers import forwarded, relayed_error
from services.runtime.tokens import ServiceTokenSigner


@dataclass(frozen=True)
class StoredMessage:
    """A message as Reply uses it."""

    sequence: int
    from_assistant: bool
    text: str


@dataclass(frozen=True)
class MessagePage:
    """Messages newest first, and the token of the page after them ('' at the oldest)."""

    messages: tuple[StoredMessage, ...]
    next_token: str


@dataclass(frozen=True)
class AssistantConversation:
    """An assistant conversation: who to show the tokens to."""

    conversation_id: str
    member_user_ids: tuple[str, ...]
    model: str
    """The model chosen when the conversation was created; empty for the default."""
    collections: tuple[str, ...] = ()
    """The owner's collections a Reply answers from when it names none."""


class HistoryClient:
    """History over gRPC with the caller's token."""

    def __init__(self, target: str, timeout_s: float, page_size: int, signer: ServiceTokenSigner | None = None) -> None:
        self._signer = signer
        self._channel = peer_channel(target)
        self._stub = history_pb2_grpc.HistoryServiceStub(self._channel)
        self._timeout_s = timeout_s
        self._page_size = page_size

    async def conversation(self, conversation_id: str, credentials: str) -> AssistantConversation:
        """The conversation, checked to be an assistant one the caller is in."""
        try:
            reply = await self._stub.GetConversation(
                history_pb2.GetConversationRequest(conversation_id=conversation_id),
                metadata=forwarded(credentials),
                timeout=self._timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            raise relayed_error(exc, "history") from None
        if reply.conversation.kind != history_pb2.CONVERSATION_KIND_ASSISTANT:
            raise NotAnAssistantConversation(conversation_id)
        users = tuple(m.user_id for m in reply.conversation.members if m.user_id)
        return AssistantConversation(
            conversation_id, users, reply.conversation.model, tuple(reply.conversation.collections)
        )

    async def newest_page(self, conversation_id: str, credentials: str, page_token: str = "") -> MessagePage:
        """One page of the conversation's messages, newest first (deleted and empty ones left out)."""
        try:
            page = await self._stub.ListMessages(
                history_pb2.ListMessagesRequest(
                    conversation_id=conversation_id,
                    page=common_pb2.PageRequest(page_size=self._page_size, page_token=page_token),
                    direction=common_pb2.DIRECTION_BACKWARD,
                ),
                metadata=forwarded(credentials),
                timeout=self._timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            raise relayed_error(exc, "history") from None
        messages = tuple(
            StoredMessage(m.sequence, m.author_kind == history_pb2.AUTHOR_KIND_ASSISTANT, m.text)
            for m in page.messages
            if not m.deleted and m.text
        )
        return MessagePage(messages, page.page.next_page_token if page.messages else "")

    def _acting_for(self, user_id: str, credentials: str) -> tuple[tuple[str, str], ...]:
        """Metadata of an internal call for ``user_id``: inference's service token naming them.

        Without a service key (a misconfigured deployment) the caller's own token goes, and
        history refuses it on an internal method: Reply then fails visibly, never silently.
        """
        if self._signer is None:
            return forwarded(credentials)
        return (("authorization", f"Bearer {self._signer.token()}"), (ON_BEHALF_OF, user_id))

    async def store_reply(
        self,
        conversation_id: str,
        request_id: str,
        text: str,
        user_id: str,
        credentials: str,
        citations: Sequence[Citation] = (),
    ) -> str:
        """Store the assistant's reply (and a grounded one's citations) for ``user_id``; return the message id.

        Idempotent on ``request_id``.
        """
        cited = [
            history_pb2.Citation(
                number=c.number, collection=c.collection, point_id=c.point_id, source=c.source,
                offset=c.offset, score=c.score, passage=c.passage,
            )
            for c in citations
        ]  # fmt: skip
        try:
            reply = await self._stub.AppendAssistantMessage(
                history_pb2.AppendAssistantMessageRequest(
                    conversation_id=conversation_id, request_id=request_id, text=text, citations=cited
                ),
                metadata=self._acting_for(user_id, credentials),
                timeout=self._timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            raise relayed_error(exc, "history") from None
        return str(reply.message.message_id)

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()
