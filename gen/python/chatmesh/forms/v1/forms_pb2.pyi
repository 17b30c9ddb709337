import datetime

from buf.validate import validate_pb2 as _validate_pb2
from chatmesh.common.v1 import access_pb2 as _access_pb2
from chatmesh.common.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FieldType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FIELD_TYPE_UNSPECIFIED: _ClassVar[FieldType]
    FIELD_TYPE_TEXT: _ClassVar[FieldType]
    FIELD_TYPE_LONG_TEXT: _ClassVar[FieldType]
    FIELD_TYPE_EMAIL: _ClassVar[FieldType]
    FIELD_TYPE_NUMBER: _ClassVar[FieldType]
    FIELD_TYPE_INTEGER: _ClassVar[FieldType]
    FIELD_TYPE_BOOLEAN: _ClassVar[FieldType]
    FIELD_TYPE_CHOICE: _ClassVar[FieldType]
    FIELD_TYPE_DATE: _ClassVar[FieldType]
    FIELD_TYPE_URL: _ClassVar[FieldType]

class ConsumerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSUMER_STATE_UNSPECIFIED: _ClassVar[ConsumerState]
    CONSUMER_STATE_PENDING: _ClassVar[ConsumerState]
    CONSUMER_STATE_DONE: _ClassVar[ConsumerState]
    CONSUMER_STATE_FAILED: _ClassVar[ConsumerState]
    CONSUMER_STATE_DEAD_LETTERED: _ClassVar[ConsumerState]
FIELD_TYPE_UNSPECIFIED: FieldType
FIELD_TYPE_TEXT: FieldType
FIELD_TYPE_LONG_TEXT: FieldType
FIELD_TYPE_EMAIL: FieldType
FIELD_TYPE_NUMBER: FieldType
FIELD_TYPE_INTEGER: FieldType
FIELD_TYPE_BOOLEAN: FieldType
FIELD_TYPE_CHOICE: FieldType
FIELD_TYPE_DATE: FieldType
FIELD_TYPE_URL: FieldType
CONSUMER_STATE_UNSPECIFIED: ConsumerState
CONSUMER_STATE_PENDING: ConsumerState
CONSUMER_STATE_DONE: ConsumerState
CONSUMER_STATE_FAILED: ConsumerState
CONSUMER_STATE_DEAD_LETTERED: ConsumerState

class FieldLimits(_message.Message):
    __slots__ = ("min_length", "max_length", "min_value", "max_value", "pattern", "choices")
    MIN_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MIN_VALUE_FIELD_NUMBER: _ClassVar[int]
    MAX_VALUE_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    CHOICES_FIELD_NUMBER: _ClassVar[int]
    min_length: int
    max_length: int
    min_value: float
    max_value: float
    pattern: str
    choices: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, min_length: _Optional[int] = ..., max_length: _Optional[int] = ..., min_value: _Optional[float] = ..., max_value: _Optional[float] = ..., pattern: _Optional[str] = ..., choices: _Optional[_Iterable[str]] = ...) -> None: ...

class Field(_message.Message):
    __slots__ = ("key", "label", "type", "required", "limits", "multiple", "help_text")
    KEY_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    MULTIPLE_FIELD_NUMBER: _ClassVar[int]
    HELP_TEXT_FIELD_NUMBER: _ClassVar[int]
    key: str
    label: str
    type: FieldType
    required: bool
    limits: FieldLimits
    multiple: bool
    help_text: str
    def __init__(self, key: _Optional[str] = ..., label: _Optional[str] = ..., type: _Optional[_Union[FieldType, str]] = ..., required: _Optional[bool] = ..., limits: _Optional[_Union[FieldLimits, _Mapping]] = ..., multiple: _Optional[bool] = ..., help_text: _Optional[str] = ...) -> None: ...

class Form(_message.Message):
    __slots__ = ("form_id", "name", "title", "description", "fields", "version", "owner_user_id", "created_at", "public", "updated_at")
    FORM_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OWNER_USER_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    form_id: str
    name: str
    title: str
    description: str
    fields: _containers.RepeatedCompositeFieldContainer[Field]
    version: int
    owner_user_id: str
    created_at: _timestamp_pb2.Timestamp
    public: bool
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, form_id: _Optional[str] = ..., name: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., fields: _Optional[_Iterable[_Union[Field, _Mapping]]] = ..., version: _Optional[int] = ..., owner_user_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., public: _Optional[bool] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ChoiceList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class FieldValue(_message.Message):
    __slots__ = ("string_value", "number_value", "integer_value", "bool_value", "choices")
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    NUMBER_VALUE_FIELD_NUMBER: _ClassVar[int]
    INTEGER_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    CHOICES_FIELD_NUMBER: _ClassVar[int]
    string_value: str
    number_value: float
    integer_value: int
    bool_value: bool
    choices: ChoiceList
    def __init__(self, string_value: _Optional[str] = ..., number_value: _Optional[float] = ..., integer_value: _Optional[int] = ..., bool_value: _Optional[bool] = ..., choices: _Optional[_Union[ChoiceList, _Mapping]] = ...) -> None: ...

class Submission(_message.Message):
    __slots__ = ("submission_id", "form_id", "form_version", "submitter_user_id", "values", "idempotency_key", "created_at", "status", "screening")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: FieldValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[FieldValue, _Mapping]] = ...) -> None: ...
    SUBMISSION_ID_FIELD_NUMBER: _ClassVar[int]
    FORM_ID_FIELD_NUMBER: _ClassVar[int]
    FORM_VERSION_FIELD_NUMBER: _ClassVar[int]
    SUBMITTER_USER_ID_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SCREENING_FIELD_NUMBER: _ClassVar[int]
    submission_id: str
    form_id: str
    form_version: int
    submitter_user_id: str
    values: _containers.MessageMap[str, FieldValue]
    idempotency_key: str
    created_at: _timestamp_pb2.Timestamp
    status: SubmissionStatus
    screening: Screening
    def __init__(self, submission_id: _Optional[str] = ..., form_id: _Optional[str] = ..., form_version: _Optional[int] = ..., submitter_user_id: _Optional[str] = ..., values: _Optional[_Mapping[str, FieldValue]] = ..., idempotency_key: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[SubmissionStatus, _Mapping]] = ..., screening: _Optional[_Union[Screening, _Mapping]] = ...) -> None: ...

class Screening(_message.Message):
    __slots__ = ("flagged", "flagged_keys")
    FLAGGED_FIELD_NUMBER: _ClassVar[int]
    FLAGGED_KEYS_FIELD_NUMBER: _ClassVar[int]
    flagged: bool
    flagged_keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, flagged: _Optional[bool] = ..., flagged_keys: _Optional[_Iterable[str]] = ...) -> None: ...

class ConsumerStatus(_message.Message):
    __slots__ = ("consumer", "state", "required", "deliveries", "last_error", "updated_at")
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    consumer: str
    state: ConsumerState
    required: bool
    deliveries: int
    last_error: str
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, consumer: _Optional[str] = ..., state: _Optional[_Union[ConsumerState, str]] = ..., required: _Optional[bool] = ..., deliveries: _Optional[int] = ..., last_error: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SubmissionStatus(_message.Message):
    __slots__ = ("submission_id", "form_id", "processed", "processed_at", "consumers")
    SUBMISSION_ID_FIELD_NUMBER: _ClassVar[int]
    FORM_ID_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_AT_FIELD_NUMBER: _ClassVar[int]
    CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    submission_id: str
    form_id: str
    processed: bool
    processed_at: _timestamp_pb2.Timestamp
    consumers: _containers.RepeatedCompositeFieldContainer[ConsumerStatus]
    def __init__(self, submission_id: _Optional[str] = ..., form_id: _Optional[str] = ..., processed: _Optional[bool] = ..., processed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., consumers: _Optional[_Iterable[_Union[ConsumerStatus, _Mapping]]] = ...) -> None: ...

class CreateFormRequest(_message.Message):
    __slots__ = ("name", "title", "description", "fields", "public")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_FIELD_NUMBER: _ClassVar[int]
    name: str
    title: str
    description: str
    fields: _containers.RepeatedCompositeFieldContainer[Field]
    public: bool
    def __init__(self, name: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., fields: _Optional[_Iterable[_Union[Field, _Mapping]]] = ..., public: _Optional[bool] = ...) -> None: ...

class UpdateFormRequest(_message.Message):
    __slots__ = ("form_id", "expected_version", "title", "description", "fields", "public")
    FORM_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_FIELD_NUMBER: _ClassVar[int]
    form_id: str
    expected_version: int
    title: str
    description: str
    fields: _containers.RepeatedCompositeFieldContainer[Field]
    public: bool
    def __init__(self, form_id: _Optional[str] = ..., expected_version: _Optional[int] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., fields: _Optional[_Iterable[_Union[Field, _Mapping]]] = ..., public: _Optional[bool] = ...) -> None: ...

class UpdateFormResponse(_message.Message):
    __slots__ = ("form",)
    FORM_FIELD_NUMBER: _ClassVar[int]
    form: Form
    def __init__(self, form: _Optional[_Union[Form, _Mapping]] = ...) -> None: ...

class CreateFormResponse(_message.Message):
    __slots__ = ("form",)
    FORM_FIELD_NUMBER: _ClassVar[int]
    form: Form
    def __init__(self, form: _Optional[_Union[Form, _Mapping]] = ...) -> None: ...

class GetFormRequest(_message.Message):
    __slots__ = ("form_id",)
    FORM_ID_FIELD_NUMBER: _ClassVar[int]
    form_id: str
    def __init__(self, form_id: _Optional[str] = ...) -> None: ...

class GetFormResponse(_message.Message):
    __slots__ = ("form",)
    FORM_FIELD_NUMBER: _ClassVar[int]
    form: Form
    def __init__(self, form: _Optional[_Union[Form, _Mapping]] = ...) -> None: ...

class ListFormsRequest(_message.Message):
    __slots__ = ("page",)
    PAGE_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListFormsResponse(_message.Message):
    __slots__ = ("forms", "page")
    FORMS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    forms: _containers.RepeatedCompositeFieldContainer[Form]
    page: _common_pb2.PageResponse
    def __init__(self, forms: _Optional[_Iterable[_Union[Form, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class SubmitRequest(_message.Message):
    __slots__ = ("form_id", "idempotency_key", "values")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: FieldValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[FieldValue, _Mapping]] = ...) -> None: ...
    FORM_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    form_id: str
    idempotency_key: str
    values: _containers.MessageMap[str, FieldValue]
    def __init__(self, form_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., values: _Optional[_Mapping[str, FieldValue]] = ...) -> None: ...

class SubmitResponse(_message.Message):
    __slots__ = ("submission_id", "duplicate", "form_version", "created_at")
    SUBMISSION_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    FORM_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    submission_id: str
    duplicate: bool
    form_version: int
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, submission_id: _Optional[str] = ..., duplicate: _Optional[bool] = ..., form_version: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetSubmissionRequest(_message.Message):
    __slots__ = ("submission_id",)
    SUBMISSION_ID_FIELD_NUMBER: _ClassVar[int]
    submission_id: str
    def __init__(self, submission_id: _Optional[str] = ...) -> None: ...

class GetSubmissionResponse(_message.Message):
    __slots__ = ("status", "submission")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SUBMISSION_FIELD_NUMBER: _ClassVar[int]
    status: SubmissionStatus
    submission: Submission
    def __init__(self, status: _Optional[_Union[SubmissionStatus, _Mapping]] = ..., submission: _Optional[_Union[Submission, _Mapping]] = ...) -> None: ...

class WatchSubmissionRequest(_message.Message):
    __slots__ = ("submission_id", "timeout_s")
    SUBMISSION_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    submission_id: str
    timeout_s: int
    def __init__(self, submission_id: _Optional[str] = ..., timeout_s: _Optional[int] = ...) -> None: ...

class WatchSubmissionResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: SubmissionStatus
    def __init__(self, status: _Optional[_Union[SubmissionStatus, _Mapping]] = ...) -> None: ...

class ListSubmissionsRequest(_message.Message):
    __slots__ = ("form_id", "page")
    FORM_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    form_id: str
    page: _common_pb2.PageRequest
    def __init__(self, form_id: _Optional[str] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListSubmissionsResponse(_message.Message):
    __slots__ = ("submissions", "page")
    SUBMISSIONS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    submissions: _containers.RepeatedCompositeFieldContainer[Submission]
    page: _common_pb2.PageResponse
    def __init__(self, submissions: _Optional[_Iterable[_Union[Submission, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class Consumer(_message.Message):
    __slots__ = ("name", "description", "enabled", "max_deliveries", "required", "batch_size", "backoff_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    MAX_DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    enabled: bool
    max_deliveries: int
    required: bool
    batch_size: int
    backoff_ms: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., enabled: _Optional[bool] = ..., max_deliveries: _Optional[int] = ..., required: _Optional[bool] = ..., batch_size: _Optional[int] = ..., backoff_ms: _Optional[_Iterable[int]] = ...) -> None: ...

class ListConsumersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListConsumersResponse(_message.Message):
    __slots__ = ("consumers",)
    CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    consumers: _containers.RepeatedCompositeFieldContainer[Consumer]
    def __init__(self, consumers: _Optional[_Iterable[_Union[Consumer, _Mapping]]] = ...) -> None: ...

class ConsumerStatistics(_message.Message):
    __slots__ = ("consumer", "pending", "ack_pending", "redelivered", "delivered", "dead_lettered", "last_active_at", "processed_per_minute", "oldest_unprocessed_age_ms", "required")
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    ACK_PENDING_FIELD_NUMBER: _ClassVar[int]
    REDELIVERED_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERED_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVE_AT_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    OLDEST_UNPROCESSED_AGE_MS_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    consumer: str
    pending: int
    ack_pending: int
    redelivered: int
    delivered: int
    dead_lettered: int
    last_active_at: _timestamp_pb2.Timestamp
    processed_per_minute: float
    oldest_unprocessed_age_ms: int
    required: bool
    def __init__(self, consumer: _Optional[str] = ..., pending: _Optional[int] = ..., ack_pending: _Optional[int] = ..., redelivered: _Optional[int] = ..., delivered: _Optional[int] = ..., dead_lettered: _Optional[int] = ..., last_active_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., processed_per_minute: _Optional[float] = ..., oldest_unprocessed_age_ms: _Optional[int] = ..., required: _Optional[bool] = ...) -> None: ...

class ConsumerStatsRequest(_message.Message):
    __slots__ = ("consumer",)
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    consumer: str
    def __init__(self, consumer: _Optional[str] = ...) -> None: ...

class ConsumerStatsResponse(_message.Message):
    __slots__ = ("consumers",)
    CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    consumers: _containers.RepeatedCompositeFieldContainer[ConsumerStatistics]
    def __init__(self, consumers: _Optional[_Iterable[_Union[ConsumerStatistics, _Mapping]]] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("dead_letter_id", "consumer", "submission_id", "form_id", "deliveries", "last_error", "dead_lettered_at")
    DEAD_LETTER_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    SUBMISSION_ID_FIELD_NUMBER: _ClassVar[int]
    FORM_ID_FIELD_NUMBER: _ClassVar[int]
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERED_AT_FIELD_NUMBER: _ClassVar[int]
    dead_letter_id: str
    consumer: str
    submission_id: str
    form_id: str
    deliveries: int
    last_error: str
    dead_lettered_at: _timestamp_pb2.Timestamp
    def __init__(self, dead_letter_id: _Optional[str] = ..., consumer: _Optional[str] = ..., submission_id: _Optional[str] = ..., form_id: _Optional[str] = ..., deliveries: _Optional[int] = ..., last_error: _Optional[str] = ..., dead_lettered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListDeadLettersRequest(_message.Message):
    __slots__ = ("consumer", "form_id", "page")
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    FORM_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    consumer: str
    form_id: str
    page: _common_pb2.PageRequest
    def __init__(self, consumer: _Optional[str] = ..., form_id: _Optional[str] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListDeadLettersResponse(_message.Message):
    __slots__ = ("dead_letters", "page")
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    dead_letters: _containers.RepeatedCompositeFieldContainer[DeadLetter]
    page: _common_pb2.PageResponse
    def __init__(self, dead_letters: _Optional[_Iterable[_Union[DeadLetter, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class RedriveRequest(_message.Message):
    __slots__ = ("dead_letter_ids", "all_for_consumer")
    DEAD_LETTER_IDS_FIELD_NUMBER: _ClassVar[int]
    ALL_FOR_CONSUMER_FIELD_NUMBER: _ClassVar[int]
    dead_letter_ids: _containers.RepeatedScalarFieldContainer[str]
    all_for_consumer: str
    def __init__(self, dead_letter_ids: _Optional[_Iterable[str]] = ..., all_for_consumer: _Optional[str] = ...) -> None: ...

class RedriveResponse(_message.Message):
    __slots__ = ("redriven_count",)
    REDRIVEN_COUNT_FIELD_NUMBER: _ClassVar[int]
    redriven_count: int
    def __init__(self, redriven_count: _Optional[int] = ...) -> None: ...
