"""Domain values to Protobuf messages, shared by the servicer and the bus adapter."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from chatmesh.presence.v1 import presence_pb2 as pb
from services.presence.folder import Presence, PresenceState

_STATES = {
    PresenceState.UNSPECIFIED: pb.PRESENCE_STATE_UNSPECIFIED,
    PresenceState.ONLINE: pb.PRESENCE_STATE_ONLINE,
    PresenceState.AWAY: pb.PRESENCE_STATE_AWAY,
    PresenceState.OFFLINE: pb.PRESENCE_STATE_OFFLINE,
}


def timestamp(unix_s: float) -> Timestamp:
    """A Timestamp of unix seconds (millisecond precision, as CQL keeps)."""
    stamp = Timestamp()
    stamp.FromMilliseconds(round(unix_s * 1000))
    return stamp


def user_presence(presence: Presence) -> pb.UserPresence:
    """The contract's UserPresence of a folded presence."""
    message = pb.UserPresence(
        user_id=presence.user_id,
        state=_STATES[presence.state],
        device_count=presence.device_count,
    )
    if presence.last_seen_at is not None:
        message.last_seen_at.CopyFrom(timestamp(presence.last_seen_at))
    return message
