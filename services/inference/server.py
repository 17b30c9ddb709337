"""Wiring of the inference service: settings -> NATS streams, servicer, server."""

from __future__ import annotations

from chatmesh.inference.v1 import inference_pb2, inference_pb2_grpc
from services.inference.servicer import InferenceServicer
from services.inference.settings import InferenceSettings
from services.inference.streams import KV_BUCKETS, STREAMS
from services.runtime.bus import connect, ensure_kv, ensure_stream
from services.runtime.server import ServiceBinding, ServiceServer, create_server, run

SERVICE_NAME = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name


async def build(settings: InferenceSettings) -> ServiceServer:
    """Connect to NATS, declare the service's streams, and build the server."""
    nc = await connect(settings.nats, "inference")
    js = nc.jetstream()
    for stream in STREAMS:
        await ensure_stream(js, stream)
    for bucket in KV_BUCKETS:
        await ensure_kv(js, bucket)
    app = create_server(
        "inference",
        settings,
        [ServiceBinding(SERVICE_NAME, inference_pb2_grpc.add_InferenceServiceServicer_to_server, InferenceServicer())],
    )
    app.on_stop.append(nc.drain)
    return app


def main() -> None:
    """Run the inference service until SIGTERM."""
    run("inference", InferenceSettings, build)
