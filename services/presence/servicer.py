"""PresenceService: proto messages in, domain calls, proto messages out."""

from __future__ import annotations

from chatmesh.presence.v1 import presence_pb2_grpc


class PresenceServicer(presence_pb2_grpc.PresenceServiceServicer):
    """Every RPC answers UNIMPLEMENTED until the chat issue lands (the generated base raises
    NotImplementedError, which the error interceptor maps); never a fake success."""
