"""InferenceService: proto messages in, domain calls, proto messages out."""

from __future__ import annotations

from chatmesh.inference.v1 import inference_pb2_grpc


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    """Every RPC answers UNIMPLEMENTED until the assistant issue lands (the generated base raises
    NotImplementedError, which the error interceptor maps); never a fake success."""
