"""Wiring of the ingest service: settings -> NATS streams, servicer, server."""

from __future__ import annotations

from chatmesh.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from services.ingest.servicer import IngestServicer
from services.ingest.settings import IngestSettings
from services.ingest.streams import KV_BUCKETS, STREAMS
from services.runtime.bus import connect, ensure_kv, ensure_stream
from services.runtime.server import ServiceBinding, ServiceServer, create_server, run

SERVICE_NAME = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name


async def build(settings: IngestSettings) -> ServiceServer:
    """Connect to NATS, declare the service's streams, and build the server."""
    nc = await connect(settings.nats, "ingest")
    js = nc.jetstream()
    for stream in STREAMS:
        await ensure_stream(js, stream)
    for bucket in KV_BUCKETS:
        await ensure_kv(js, bucket)
    app = create_server(
        "ingest",
        settings,
        [ServiceBinding(SERVICE_NAME, ingest_pb2_grpc.add_IngestServiceServicer_to_server, IngestServicer())],
    )
    app.on_stop.append(nc.drain)
    return app


def main() -> None:
    """Run the ingest service until SIGTERM."""
    run("ingest", IngestSettings, build)
