"""HistoryService: proto messages in, domain calls, proto messages out."""

from __future__ import annotations

from chatmesh.history.v1 import history_pb2_grpc


class HistoryServicer(history_pb2_grpc.HistoryServiceServicer):
    """Every RPC answers UNIMPLEMENTED until the chat issue lands (the generated base raises
    NotImplementedError, which the error interceptor maps); never a fake success."""
