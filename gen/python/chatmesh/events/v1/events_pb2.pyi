import datetime

from chatmesh.history.v1 import history_pb2 as _history_pb2
from chatmesh.presence.v1 import presence_pb2 as _presence_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Event(_message.Message):
    __slots__ = ("occurred_at", "message_created", "message_edited", "message_deleted", "read_receipt", "delivery_receipt", "typing", "presence_changed", "assistant_token", "resync_required", "keep_alive", "form_submission_processed")
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_CREATED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_EDITED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_DELETED_FIELD_NUMBER: _ClassVar[int]
    READ_RECEIPT_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_RECEIPT_FIELD_NUMBER: _ClassVar[int]
    TYPING_FIELD_NUMBER: _ClassVar[int]
    PRESENCE_CHANGED_FIELD_NUMBER: _ClassVar[int]
    ASSISTANT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RESYNC_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    KEEP_ALIVE_FIELD_NUMBER: _ClassVar[int]
    FORM_SUBMISSION_PROCESSED_FIELD_NUMBER: _ClassVar[int]
    occurred_at: _timestamp_pb2.Timestamp
    message_created: MessageCreated
    message_edited: MessageEdited
    message_deleted: MessageDeleted
    read_receipt: ReadReceipt
    delivery_receipt: DeliveryReceipt
    typing: Typing
    presence_changed: PresenceChanged
    assistant_token: AssistantToken
    resync_required: ResyncRequired
    keep_alive: KeepAlive
    form_submission_processed: FormSubmissionProcessed
    def __init__(self, occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message_created: _Optional[_Union[MessageCreated, _Mapping]] = ..., message_edited: _Optional[_Union[MessageEdited, _Mapping]] = ..., message_deleted: _Optional[_Union[MessageDeleted, _Mapping]] = ..., read_receipt: _Optional[_Union[ReadReceipt, _Mapping]] = ..., delivery_receipt: _Optional[_Union[DeliveryReceipt, _Mapping]] = ..., typing: _Optional[_Union[Typing, _Mapping]] = ..., presence_changed: _Optional[_Union[PresenceChanged, _Mapping]] = ..., assistant_token: _Optional[_Union[AssistantToken, _Mapping]] = ..., resync_required: _Optional[_Union[ResyncRequired, _Mapping]] = ..., keep_alive: _Optional[_Union[KeepAlive, _Mapping]] = ..., form_submission_processed: _Optional[_Union[FormSubmissionProcessed, _Mapping]] = ...) -> None: ...

class FormSubmissionProcessed(_message.Message):
    __slots__ = ("submission_id", "form_id", "form_version", "processed_at")
    SUBMISSION_ID_FIELD_NUMBER: _ClassVar[int]
    FORM_ID_FIELD_NUMBER: _ClassVar[int]
    FORM_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_AT_FIELD_NUMBER: _ClassVar[int]
    submission_id: str
    form_id: str
    form_version: int
    processed_at: _timestamp_pb2.Timestamp
    def __init__(self, submission_id: _Optional[str] = ..., form_id: _Optional[str] = ..., form_version: _Optional[int] = ..., processed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class MessageCreated(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: _history_pb2.Message
    def __init__(self, message: _Optional[_Union[_history_pb2.Message, _Mapping]] = ...) -> None: ...

class MessageEdited(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: _history_pb2.Message
    def __init__(self, message: _Optional[_Union[_history_pb2.Message, _Mapping]] = ...) -> None: ...

class MessageDeleted(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: _history_pb2.Message
    def __init__(self, message: _Optional[_Union[_history_pb2.Message, _Mapping]] = ...) -> None: ...

class ReadReceipt(_message.Message):
    __slots__ = ("conversation_id", "user_id", "read_sequence")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    READ_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    user_id: str
    read_sequence: int
    def __init__(self, conversation_id: _Optional[str] = ..., user_id: _Optional[str] = ..., read_sequence: _Optional[int] = ...) -> None: ...

class DeliveryReceipt(_message.Message):
    __slots__ = ("conversation_id", "delivered_sequence", "user_id")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    delivered_sequence: int
    user_id: str
    def __init__(self, conversation_id: _Optional[str] = ..., delivered_sequence: _Optional[int] = ..., user_id: _Optional[str] = ...) -> None: ...

class Typing(_message.Message):
    __slots__ = ("conversation_id", "user_id", "typing", "expires_in_ms")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TYPING_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_MS_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    user_id: str
    typing: bool
    expires_in_ms: int
    def __init__(self, conversation_id: _Optional[str] = ..., user_id: _Optional[str] = ..., typing: _Optional[bool] = ..., expires_in_ms: _Optional[int] = ...) -> None: ...

class PresenceChanged(_message.Message):
    __slots__ = ("presence",)
    PRESENCE_FIELD_NUMBER: _ClassVar[int]
    presence: _presence_pb2.UserPresence
    def __init__(self, presence: _Optional[_Union[_presence_pb2.UserPresence, _Mapping]] = ...) -> None: ...

class AssistantToken(_message.Message):
    __slots__ = ("conversation_id", "request_id", "index", "text", "done")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    request_id: str
    index: int
    text: str
    done: bool
    def __init__(self, conversation_id: _Optional[str] = ..., request_id: _Optional[str] = ..., index: _Optional[int] = ..., text: _Optional[str] = ..., done: _Optional[bool] = ...) -> None: ...

class ResyncRequired(_message.Message):
    __slots__ = ("oldest_available_sequence",)
    OLDEST_AVAILABLE_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    oldest_available_sequence: int
    def __init__(self, oldest_available_sequence: _Optional[int] = ...) -> None: ...

class KeepAlive(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeviceHeartbeat(_message.Message):
    __slots__ = ("user_id", "device_id", "connected", "active")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    device_id: str
    connected: bool
    active: bool
    def __init__(self, user_id: _Optional[str] = ..., device_id: _Optional[str] = ..., connected: _Optional[bool] = ..., active: _Optional[bool] = ...) -> None: ...
