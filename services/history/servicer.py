"""HistoryService: proto messages in, domain calls, proto messages out."""

from __future__ import annotations

from chatmesh.common.v1 import common_pb2
from chatmesh.history.v1 import history_pb2 as pb
from chatmesh.history.v1 import history_pb2_grpc
from services.history.conversations import Conversations, ConversationView
from services.history.protos import message_pb, timestamp
from services.runtime.errors import Unauthenticated
from services.runtime.ids import canonical_uuid, canonical_uuid_or_none, canonical_uuids
from services.runtime.interceptors import Context, current_principal


def _me() -> str:
    """The caller's user id, canonical."""
    user_id = current_principal().user_id
    return canonical_uuid_or_none(user_id) or user_id


def _cid(value: str) -> str:
    """A request's conversation id, canonical (an upper-case spelling is the same conversation)."""
    return canonical_uuid("conversation_id", value)


def _authorization(context: Context) -> str:
    """The caller's `authorization` header, to forward to session as is (AuthLayer already checked it)."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            return value
    raise Unauthenticated("missing access token: send `authorization: Bearer <token>`")


def _conversation_pb(view: ConversationView) -> pb.Conversation:
    record = view.record
    conversation = pb.Conversation(
        conversation_id=record.conversation_id,
        kind=record.kind,  # type: ignore[arg-type]
        members=[pb.Member(user_id=m, kind=pb.AUTHOR_KIND_USER) for m in record.member_ids],
        unread_count=view.unread,
        created_at=timestamp(record.created_at),
        read_sequence=view.read_seq,
        model=record.model,
        collections=record.collections,
    )
    if record.kind == pb.CONVERSATION_KIND_ASSISTANT:
        conversation.members.append(pb.Member(kind=pb.AUTHOR_KIND_ASSISTANT, display_name="assistant"))
    if view.last_message:
        conversation.last_message.ParseFromString(view.last_message)
    return conversation


class HistoryServicer(history_pb2_grpc.HistoryServiceServicer):
    """Every RPC acts for the caller of the access token."""

    def __init__(self, conversations: Conversations) -> None:
        self._conversations = conversations

    async def CreateConversation(
        self, request: pb.CreateConversationRequest, context: Context
    ) -> pb.CreateConversationResponse:
        peer = canonical_uuid("peer_user_id", request.peer_user_id) if request.peer_user_id else ""
        view, created = await self._conversations.create(
            _me(), request.kind, peer, request.model, _authorization(context) if peer else "", request.collections
        )
        return pb.CreateConversationResponse(conversation=_conversation_pb(view), created=created)

    async def GetConversation(self, request: pb.GetConversationRequest, context: Context) -> pb.GetConversationResponse:
        view = await self._conversations.get(_me(), _cid(request.conversation_id))
        return pb.GetConversationResponse(conversation=_conversation_pb(view))

    async def SendMessage(self, request: pb.SendMessageRequest, context: Context) -> pb.SendMessageResponse:
        message, duplicate = await self._conversations.send(
            _me(), _cid(request.conversation_id), request.client_message_id, request.text
        )
        return pb.SendMessageResponse(message=message, duplicate=duplicate)

    async def AppendAssistantMessage(
        self, request: pb.AppendAssistantMessageRequest, context: Context
    ) -> pb.AppendAssistantMessageResponse:
        message, duplicate = await self._conversations.append_assistant(
            _me(), _cid(request.conversation_id), request.request_id, request.text, request.citations
        )
        return pb.AppendAssistantMessageResponse(message=message, duplicate=duplicate)

    async def ListConversations(
        self, request: pb.ListConversationsRequest, context: Context
    ) -> pb.ListConversationsResponse:
        views, next_token = await self._conversations.list(_me(), request.page.page_size, request.page.page_token)
        return pb.ListConversationsResponse(
            conversations=[_conversation_pb(v) for v in views],
            page=common_pb2.PageResponse(next_page_token=next_token),
        )

    async def ListMessages(self, request: pb.ListMessagesRequest, context: Context) -> pb.ListMessagesResponse:
        page = await self._conversations.list_messages(
            _me(),
            _cid(request.conversation_id),
            request.page.page_size,
            request.page.page_token,
            request.direction == common_pb2.DIRECTION_FORWARD,
            request.from_sequence,
        )
        return pb.ListMessagesResponse(
            messages=page.messages, page=common_pb2.PageResponse(next_page_token=page.next_token)
        )

    async def FilterContacts(self, request: pb.FilterContactsRequest, context: Context) -> pb.FilterContactsResponse:
        contacts = await self._conversations.contacts(_me(), canonical_uuids("user_ids", request.user_ids))
        return pb.FilterContactsResponse(user_ids=contacts)

    async def MarkRead(self, request: pb.MarkReadRequest, context: Context) -> pb.MarkReadResponse:
        read, unread = await self._conversations.mark_read(_me(), _cid(request.conversation_id), request.sequence)
        return pb.MarkReadResponse(read_sequence=read, unread_count=unread)

    async def EditMessage(self, request: pb.EditMessageRequest, context: Context) -> pb.EditMessageResponse:
        message = await self._conversations.edit(_me(), _cid(request.conversation_id), request.message_id, request.text)
        return pb.EditMessageResponse(message=message_pb(message))

    async def DeleteMessage(self, request: pb.DeleteMessageRequest, context: Context) -> pb.DeleteMessageResponse:
        message = await self._conversations.delete(_me(), _cid(request.conversation_id), request.message_id)
        return pb.DeleteMessageResponse(message=message_pb(message))
