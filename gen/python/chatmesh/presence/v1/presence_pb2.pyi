import datetime

from buf.validate import validate_pb2 as _validate_pb2
from chatmesh.common.v1 import access_pb2 as _access_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PresenceState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRESENCE_STATE_UNSPECIFIED: _ClassVar[PresenceState]
    PRESENCE_STATE_ONLINE: _ClassVar[PresenceState]
    PRESENCE_STATE_AWAY: _ClassVar[PresenceState]
    PRESENCE_STATE_OFFLINE: _ClassVar[PresenceState]
PRESENCE_STATE_UNSPECIFIED: PresenceState
PRESENCE_STATE_ONLINE: PresenceState
PRESENCE_STATE_AWAY: PresenceState
PRESENCE_STATE_OFFLINE: PresenceState

class UserPresence(_message.Message):
    __slots__ = ("user_id", "state", "last_seen_at", "device_count")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_COUNT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    state: PresenceState
    last_seen_at: _timestamp_pb2.Timestamp
    device_count: int
    def __init__(self, user_id: _Optional[str] = ..., state: _Optional[_Union[PresenceState, str]] = ..., last_seen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., device_count: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("active",)
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    active: bool
    def __init__(self, active: _Optional[bool] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("next_heartbeat_s",)
    NEXT_HEARTBEAT_S_FIELD_NUMBER: _ClassVar[int]
    next_heartbeat_s: int
    def __init__(self, next_heartbeat_s: _Optional[int] = ...) -> None: ...

class GetPresenceRequest(_message.Message):
    __slots__ = ("user_ids",)
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetPresenceResponse(_message.Message):
    __slots__ = ("presences",)
    PRESENCES_FIELD_NUMBER: _ClassVar[int]
    presences: _containers.RepeatedCompositeFieldContainer[UserPresence]
    def __init__(self, presences: _Optional[_Iterable[_Union[UserPresence, _Mapping]]] = ...) -> None: ...

class WatchPresenceRequest(_message.Message):
    __slots__ = ("user_ids",)
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchPresenceResponse(_message.Message):
    __slots__ = ("presence",)
    PRESENCE_FIELD_NUMBER: _ClassVar[int]
    presence: UserPresence
    def __init__(self, presence: _Optional[_Union[UserPresence, _Mapping]] = ...) -> None: ...

class SetTypingRequest(_message.Message):
    __slots__ = ("conversation_id", "typing")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    TYPING_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    typing: bool
    def __init__(self, conversation_id: _Optional[str] = ..., typing: _Optional[bool] = ...) -> None: ...

class SetTypingResponse(_message.Message):
    __slots__ = ("expires_in_ms",)
    EXPIRES_IN_MS_FIELD_NUMBER: _ClassVar[int]
    expires_in_ms: int
    def __init__(self, expires_in_ms: _Optional[int] = ...) -> None: ...

class PrivacySettings(_message.Message):
    __slots__ = ("hide_last_seen",)
    HIDE_LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    hide_last_seen: bool
    def __init__(self, hide_last_seen: _Optional[bool] = ...) -> None: ...

class GetPrivacyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetPrivacyResponse(_message.Message):
    __slots__ = ("privacy",)
    PRIVACY_FIELD_NUMBER: _ClassVar[int]
    privacy: PrivacySettings
    def __init__(self, privacy: _Optional[_Union[PrivacySettings, _Mapping]] = ...) -> None: ...

class UpdatePrivacyRequest(_message.Message):
    __slots__ = ("privacy",)
    PRIVACY_FIELD_NUMBER: _ClassVar[int]
    privacy: PrivacySettings
    def __init__(self, privacy: _Optional[_Union[PrivacySettings, _Mapping]] = ...) -> None: ...

class UpdatePrivacyResponse(_message.Message):
    __slots__ = ("privacy",)
    PRIVACY_FIELD_NUMBER: _ClassVar[int]
    privacy: PrivacySettings
    def __init__(self, privacy: _Optional[_Union[PrivacySettings, _Mapping]] = ...) -> None: ...
