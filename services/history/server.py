"""Wiring of the history service: settings -> CQL, NATS streams, session (peer lookups), domain, servicer, server."""

from __future__ import annotations

import dataclasses
import gc
import logging

from nats.aio.msg import Msg

from chatmesh.events.v1 import events_pb2
from chatmesh.history.v1 import history_pb2, history_pb2_grpc
from services.history.conversations import Conversations
from services.history.directory import SessionDirectory
from services.history.events import EventPublisher
from services.history.servicer import HistoryServicer
from services.history.settings import HistorySettings
from services.history.store import SCHEMA, HistoryStore, add_columns
from services.history.streams import STREAMS
from services.runtime.bus import connect, ensure_stream
from services.runtime.cql import CqlSession
from services.runtime.ratelimit import RateLimiter
from services.runtime.server import ServiceBinding, ServiceServer, create_server, run
from services.runtime.subjects import DELIVERED_SUBJECT

SERVICE_NAME = history_pb2.DESCRIPTOR.services_by_name["HistoryService"].full_name

log = logging.getLogger("chatmesh.history")


async def build(settings: HistorySettings) -> ServiceServer:
    """Connect to CQL and NATS, declare the CHAT stream, and build the server."""
    cql = await CqlSession.connect(settings.cql, SCHEMA)
    await add_columns(cql)
    nc = await connect(settings.nats, "history")
    js = nc.jetstream()
    for stream in STREAMS:
        if stream.name == "CHAT":
            retention = settings.chat_retention_s
            # JetStream refuses a duplicate window longer than the retention.
            window = min(stream.duplicate_window or retention, retention)
            stream = dataclasses.replace(
                stream, max_age=retention, duplicate_window=window, max_consumers=settings.chat_max_consumers
            )
        await ensure_stream(js, stream)
    directory = SessionDirectory(settings.session_target, settings.session_timeout_s, settings.known_users_cache_size)
    conversations = Conversations(
        HistoryStore(cql),
        EventPublisher(nc, settings.nats.publish_timeout_s),
        RateLimiter(settings.sends_per_second, settings.send_burst),
        settings.conversation_cache_size,
        directory,
    )

    async def on_delivered(msg: Msg) -> None:
        receipt = events_pb2.DeliveryReceipt.FromString(msg.data)
        conversations.report_delivered(receipt.user_id, receipt.conversation_id, receipt.delivered_sequence)

    # A queue group: with several history replicas, each report is handled once.
    await nc.subscribe(DELIVERED_SUBJECT, queue="history", cb=on_delivered)
    app = create_server(
        "history",
        settings,
        [
            ServiceBinding(
                SERVICE_NAME, history_pb2_grpc.add_HistoryServiceServicer_to_server, HistoryServicer(conversations)
            )
        ],
    )
    app.on_stop.append(nc.drain)
    app.on_stop.append(cql.close)
    app.on_stop.append(directory.close)
    return app


async def _build_process(settings: HistorySettings) -> ServiceServer:
    app = await build(settings)
    # Everything built to serve lives as long as the process: frozen out of the collector, so
    # its full passes (pauses that show in the latency tail) walk only what calls allocate.
    gc.freeze()
    return app


def main() -> None:
    """Run the history service until SIGTERM."""
    run("history", HistorySettings, _build_process)
