"""Wiring of the presence service: settings -> NATS, KV bucket, CQL, history (membership, contacts), domain, server."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from chatmesh.presence.v1 import presence_pb2, presence_pb2_grpc
from services.presence.bucket import PresenceBucket
from services.presence.events import HeartbeatListener, NatsEvents
from services.presence.membership import HistoryMembership
from services.presence.privacy import SCHEMA as PRIVACY_SCHEMA
from services.presence.privacy import PresencePrivacy, PrivacyCacheSettings, PrivacyStore
from services.presence.servicer import PresenceServicer
from services.presence.settings import PresenceSettings
from services.presence.store import SCHEMA, LastSeenStore
from services.presence.streams import STREAMS
from services.presence.tracker import PresenceTracker, TrackerSettings
from services.presence.typing_relay import MembershipCache, TypingRelay
from services.runtime.bus import connect, ensure_stream
from services.runtime.contacts import HistoryContacts
from services.runtime.cql import CqlSession
from services.runtime.ratelimit import RateLimiter
from services.runtime.server import ServiceBinding, ServiceServer, create_server, run

log = logging.getLogger("chatmesh.presence")

SERVICE_NAME = presence_pb2.DESCRIPTOR.services_by_name["PresenceService"].full_name


@dataclass(frozen=True)
class PresenceApp:
    """The built server and the domain objects behind it (tests look at the tracker)."""

    server: ServiceServer
    tracker: PresenceTracker


def tracker_settings(settings: PresenceSettings) -> TrackerSettings:
    """The tracker's knobs from the service settings."""
    return TrackerSettings(
        device_ttl_s=settings.device_ttl_s,
        heartbeat_min_interval_s=settings.heartbeat_min_interval_s,
        debounce_s=settings.debounce_s,
        sweep_interval_s=settings.sweep_interval_s,
        offline_retention_s=settings.offline_retention_s,
        offline_cache_size=settings.offline_cache_size,
        max_watches=settings.max_watches,
    )


async def assemble(settings: PresenceSettings) -> PresenceApp:
    """Connect to NATS and CQL, fold the presence bucket, and build the (not started) server."""
    cleanups: list[Callable[[], Awaitable[None]]] = []
    try:
        nc = await connect(settings.nats, "presence")
        cleanups.append(nc.drain)
        js = nc.jetstream()
        for stream in STREAMS:
            await ensure_stream(js, stream)
        bucket = await PresenceBucket.open(js, settings.kv_bucket)
        cql = await CqlSession.connect(settings.cql, SCHEMA + PRIVACY_SCHEMA)
        cleanups.append(cql.close)
        membership = HistoryMembership(settings.history_target, settings.history_timeout_s)
        cleanups.append(membership.close)
        contacts = HistoryContacts(settings.history_target, settings.history_timeout_s)
        cleanups.append(contacts.close)
        privacy = PresencePrivacy(
            contacts,
            PrivacyStore(cql),
            PrivacyCacheSettings(settings.contacts_cache_s, settings.privacy_cache_s, settings.privacy_cache_size),
        )
        events = NatsEvents(nc, privacy)
        tracker = PresenceTracker(
            tracker_settings(settings),
            bucket,
            LastSeenStore(cql, settings.last_seen_read_concurrency),
            events,
            replica_id=uuid.uuid4().hex,
        )
        await tracker.start()
        cleanups.append(tracker.stop)
        listener = HeartbeatListener(nc, tracker)
        await listener.start()
        cleanups.append(listener.stop)
        typing = TypingRelay(
            membership,
            events,
            RateLimiter(settings.typing_rate_per_s, max(1.0, settings.typing_rate_per_s)),
            MembershipCache(settings.membership_cache_s, settings.membership_cache_size),
            settings.typing_ttl_ms,
        )
        server = create_server(
            "presence",
            settings,
            [
                ServiceBinding(
                    SERVICE_NAME,
                    presence_pb2_grpc.add_PresenceServiceServicer_to_server,
                    PresenceServicer(tracker, typing, privacy),
                )
            ],
        )
    except BaseException:
        for cleanup in reversed(cleanups):
            try:
                await cleanup()
            except Exception:  # noqa: BLE001 - the start failed already; that error is the one to raise
                log.warning("cleanup after a failed start failed", exc_info=True)
        raise
    # ServiceServer runs on_stop last-in first-out: listener, tracker, history, CQL, NATS.
    server.on_stop.extend(cleanups)
    return PresenceApp(server, tracker)


async def build(settings: PresenceSettings) -> ServiceServer:
    """Connect, fold the presence bucket, and build the server."""
    return (await assemble(settings)).server


def main() -> None:
    """Run the presence service until SIGTERM."""
    run("presence", PresenceSettings, build)
