"""IngestService: proto messages in, domain calls, proto messages out."""

from __future__ import annotations

from chatmesh.ingest.v1 import ingest_pb2_grpc


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    """Every RPC answers UNIMPLEMENTED until the ingest issue lands (the generated base raises
    NotImplementedError, which the error interceptor maps); never a fake success."""
