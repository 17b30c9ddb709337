"""Wiring of the presence service: settings -> NATS streams, servicer, server."""

from __future__ import annotations

from chatmesh.presence.v1 import presence_pb2, presence_pb2_grpc
from services.presence.servicer import PresenceServicer
from services.presence.settings import PresenceSettings
from services.presence.streams import KV_BUCKETS, STREAMS
from services.runtime.bus import connect, ensure_kv, ensure_stream
from services.runtime.server import ServiceBinding, ServiceServer, create_server, run

SERVICE_NAME = presence_pb2.DESCRIPTOR.services_by_name["PresenceService"].full_name


async def build(settings: PresenceSettings) -> ServiceServer:
    """Connect to NATS, declare the service's streams, and build the server."""
    nc = await connect(settings.nats, "presence")
    js = nc.jetstream()
    for stream in STREAMS:
        await ensure_stream(js, stream)
    for bucket in KV_BUCKETS:
        await ensure_kv(js, bucket)
    app = create_server(
        "presence",
        settings,
        [ServiceBinding(SERVICE_NAME, presence_pb2_grpc.add_PresenceServiceServicer_to_server, PresenceServicer())],
    )
    app.on_stop.append(nc.drain)
    return app


def main() -> None:
    """Run the presence service until SIGTERM."""
    run("presence", PresenceSettings, build)
