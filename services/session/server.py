"""Wiring of the session service: settings -> CQL, keys, domain, servicer, server."""

from __future__ import annotations

import gc

from chatmesh.session.v1 import session_pb2, session_pb2_grpc
from services.runtime.bus import connect
from services.runtime.clients import parse_networks
from services.runtime.contacts import HistoryContacts
from services.runtime.cql import CqlSession
from services.runtime.errors import Unavailable
from services.runtime.revocation import RevocationList
from services.runtime.server import ServiceBinding, ServiceServer, create_server, run
from services.runtime.tokens import TokenSigner, TokenVerifier, load_private_key
from services.session.accounts import Accounts
from services.session.feed import DeviceFeed, FeedSettings
from services.session.passwords import PasswordVault
from services.session.servicer import PUBLIC_METHODS, SessionServicer
from services.session.settings import SessionSettings
from services.session.store import SCHEMA, AccountStore
from services.session.throttle import LoginThrottle, ThrottleSettings

SERVICE_NAME = session_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name


async def build(settings: SessionSettings) -> ServiceServer:
    """Connect to CQL (creating the schema if missing) and build the server."""
    if not settings.signing_key_file.is_file():
        raise Unavailable(
            f"CHATMESH_SESSION_SIGNING_KEY_FILE: {settings.signing_key_file} does not exist "
            "(`make up` writes one; `python -m mesh keys` makes a pair)"
        )
    signer = TokenSigner(
        load_private_key(settings.signing_key_file), settings.token_issuer, settings.access_token_ttl_s
    )
    cql = await CqlSession.connect(settings.cql, SCHEMA)
    nc = await connect(settings.nats, "session")
    feed = DeviceFeed(
        nc,
        FeedSettings(
            keepalive_s=settings.connect_keepalive_s,
            heartbeat_s=settings.connect_heartbeat_s,
            consumer_inactive_s=settings.connect_consumer_inactive_s,
            queue_size=settings.connect_queue_size,
        ),
    )
    revocations = RevocationList()
    accounts = Accounts(
        AccountStore(cql),
        PasswordVault(settings.argon2_time_cost, settings.argon2_memory_kib),
        signer,
        LoginThrottle(
            ThrottleSettings(
                free_failures=settings.login_free_failures,
                base_delay_s=settings.login_backoff_base_s,
                max_delay_s=settings.login_backoff_max_s,
                reset_s=settings.login_backoff_reset_s,
                address_failures=settings.login_address_failures,
                address_window_s=settings.login_address_window_s,
                max_entries=settings.login_throttle_entries,
            )
        ),
        settings.refresh_token_ttl_s,
        settings.max_devices_per_user,
        revocations=revocations,
    )
    contacts = HistoryContacts(settings.history_target, settings.history_timeout_s)
    app = create_server(
        "session",
        settings,
        [
            ServiceBinding(
                SERVICE_NAME,
                session_pb2_grpc.add_SessionServiceServicer_to_server,
                SessionServicer(accounts, feed, contacts, parse_networks(settings.trusted_proxies)),
                PUBLIC_METHODS,
            )
        ],
        verifier=TokenVerifier(signer.public_key, settings.token_issuer, revocations=revocations),
    )
    app.on_stop.append(nc.drain)
    app.on_stop.append(feed.close)  # before the drain (on_stop runs last first)
    app.on_stop.append(cql.close)
    app.on_stop.append(contacts.close)
    return app


async def _build_process(settings: SessionSettings) -> ServiceServer:
    app = await build(settings)
    # Everything built to serve lives as long as the process: frozen out of the collector, so
    # its full passes (pauses that show in the latency tail) walk only what calls allocate.
    gc.freeze()
    return app


def main() -> None:
    """Run the session service until SIGTERM."""
    run("session", SessionSettings, _build_process)
