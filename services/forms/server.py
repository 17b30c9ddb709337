"""Wiring of the forms service: settings -> NATS streams, servicer, server."""

from __future__ import annotations

from chatmesh.forms.v1 import forms_pb2, forms_pb2_grpc
from services.forms.servicer import FormsServicer
from services.forms.settings import FormsSettings
from services.forms.streams import KV_BUCKETS, STREAMS
from services.runtime.bus import connect, ensure_kv, ensure_stream
from services.runtime.server import ServiceBinding, ServiceServer, create_server, run

SERVICE_NAME = forms_pb2.DESCRIPTOR.services_by_name["FormsService"].full_name


async def build(settings: FormsSettings) -> ServiceServer:
    """Connect to NATS, declare the service's streams, and build the server."""
    nc = await connect(settings.nats, "forms")
    js = nc.jetstream()
    for stream in STREAMS:
        await ensure_stream(js, stream)
    for bucket in KV_BUCKETS:
        await ensure_kv(js, bucket)
    app = create_server(
        "forms",
        settings,
        [ServiceBinding(SERVICE_NAME, forms_pb2_grpc.add_FormsServiceServicer_to_server, FormsServicer())],
    )
    app.on_stop.append(nc.drain)
    return app


def main() -> None:
    """Run the forms service until SIGTERM."""
    run("forms", FormsSettings, build)
