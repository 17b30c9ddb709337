"""FormsService: proto messages in, domain calls, proto messages out."""

from __future__ import annotations

from chatmesh.forms.v1 import forms_pb2_grpc


class FormsServicer(forms_pb2_grpc.FormsServiceServicer):
    """Every RPC answers UNIMPLEMENTED until the forms issue lands (the generated base raises
    NotImplementedError, which the error interceptor maps); never a fake success."""
