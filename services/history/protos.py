"""Domain records to contract messages (used by the servicer and for published events)."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from chatmesh.events.v1 import events_pb2
from chatmesh.history.v1 import history_pb2 as pb
from services.history.store import MessageRecord

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(value: datetime) -> Timestamp:
    """A protobuf Timestamp of an aware datetime (what ``FromDatetime`` gives, without its time tuples)."""
    since = value - _EPOCH
    return Timestamp(seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1000)


def message_pb(record: MessageRecord, delivery_state: int = pb.DELIVERY_STATE_UNSPECIFIED) -> pb.Message:
    """The contract's Message for a stored message."""
    message = pb.Message(
        message_id=record.message_id,
        conversation_id=record.conversation_id,
        sequence=record.seq,
        author_user_id=record.author_user_id,
        author_kind=record.author_kind,  # type: ignore[arg-type]
        text="" if record.deleted else record.text,
        client_message_id=record.client_message_id,
        created_at=timestamp(record.created_at),
        deleted=record.deleted,
        delivery_state=delivery_state,  # type: ignore[arg-type]
        citations=[] if record.deleted else [pb.Citation.FromString(c) for c in record.citations],
    )
    if record.edited_at is not None:
        message.edited_at.CopyFrom(timestamp(record.edited_at))
    return message


def event(**kind: object) -> events_pb2.Event:
    """An Event stamped now, with one of its kinds set (``message_created=...``)."""
    result = events_pb2.Event(**kind)  # type: ignore[arg-type]
    result.occurred_at.GetCurrentTime()
    return result
