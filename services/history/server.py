"""Wiring of the history service: settings -> NATS streams, servicer, server."""

from __future__ import annotations

from chatmesh.history.v1 import history_pb2, history_pb2_grpc
from services.history.servicer import HistoryServicer
from services.history.settings import HistorySettings
from services.history.streams import KV_BUCKETS, STREAMS
from services.runtime.bus import connect, ensure_kv, ensure_stream
from services.runtime.server import ServiceBinding, ServiceServer, create_server, run

SERVICE_NAME = history_pb2.DESCRIPTOR.services_by_name["HistoryService"].full_name


async def build(settings: HistorySettings) -> ServiceServer:
    """Connect to NATS, declare the service's streams, and build the server."""
    nc = await connect(settings.nats, "history")
    js = nc.jetstream()
    for stream in STREAMS:
        await ensure_stream(js, stream)
    for bucket in KV_BUCKETS:
        await ensure_kv(js, bucket)
    app = create_server(
        "history",
        settings,
        [ServiceBinding(SERVICE_NAME, history_pb2_grpc.add_HistoryServiceServicer_to_server, HistoryServicer())],
    )
    app.on_stop.append(nc.drain)
    return app


def main() -> None:
    """Run the history service until SIGTERM."""
    run("history", HistorySettings, build)
