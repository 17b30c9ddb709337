"""Wiring of the forms service: settings -> CQL, NATS streams, domain, servicer, server."""

from __future__ import annotations

import gc
import logging

from nats.aio.msg import Msg

from chatmesh.forms.v1 import forms_pb2, forms_pb2_grpc
from services.forms.deadletters import DeadLetters
from services.forms.definitions import FormDefinitions
from services.forms.directory import ConsumerDirectory
from services.forms.metrics import ConsumerGauges
from services.forms.redrive import DeadLetterDesk
from services.forms.servicer import OPTIONAL_AUTH_METHODS, FormsDomain, FormsServicer
from services.forms.settings import FormsSettings
from services.forms.stats import ConsumerStatsReader
from services.forms.status import SubmissionStatuses
from services.forms.store import SCHEMA, FormStore
from services.forms.streams import DEFS_CHANGED_SUBJECT, KV_BUCKETS, STREAMS
from services.forms.submissions import SubmissionBook
from services.forms.submit import SubmissionIntake, SubmitLimits
from services.runtime.bus import AckedPublisher, connect, ensure_kv, ensure_stream
from services.runtime.clients import parse_networks
from services.runtime.cql import CqlSession
from services.runtime.ratelimit import RateLimiter
from services.runtime.server import ServiceBinding, ServiceServer, create_server, run

SERVICE_NAME = forms_pb2.DESCRIPTOR.services_by_name["FormsService"].full_name

log = logging.getLogger("chatmesh.forms")


async def build(settings: FormsSettings) -> ServiceServer:
    """Connect to CQL and NATS, declare the service's streams, and build the server."""
    cql = await CqlSession.connect(settings.cql, SCHEMA)
    nc = await connect(settings.nats, "forms")
    js = nc.jetstream(timeout=settings.nats.publish_timeout_s)
    for stream in STREAMS:
        await ensure_stream(js, stream)
    for bucket in KV_BUCKETS:
        await ensure_kv(js, bucket)
    store = FormStore(cql)

    async def announce(form_id: str) -> None:
        await nc.publish(DEFS_CHANGED_SUBJECT, form_id.encode())

    definitions = FormDefinitions(store, settings.form_cache_size, settings.form_cache_ttl_s, announce)

    async def on_form_changed(msg: Msg) -> None:
        definitions.forget(msg.data.decode())

    await nc.subscribe(DEFS_CHANGED_SUBJECT, cb=on_form_changed)
    publisher = AckedPublisher(nc)
    limits = SubmitLimits(
        per_user=RateLimiter(settings.submits_per_second, settings.submit_burst),
        per_address=RateLimiter(settings.anonymous_per_address_per_second, settings.anonymous_address_burst),
        per_form=RateLimiter(settings.anonymous_per_form_per_second, settings.anonymous_form_burst),
        max_submission_bytes=settings.max_submission_bytes,
        publish_timeout_s=settings.nats.publish_timeout_s,
    )
    directory = ConsumerDirectory(js, settings.consumers_cache_s)
    statuses = SubmissionStatuses(nc, store, directory, settings.watch_poll_s)
    await statuses.start()
    stats = ConsumerStatsReader(nc, directory, None)
    letters = DeadLetters(nc, publisher, store, settings.nats.publish_timeout_s)
    domain = FormsDomain(
        definitions=definitions,
        intake=SubmissionIntake(definitions, publisher, js, limits),
        statuses=statuses,
        submissions=SubmissionBook(store, definitions, statuses),
        dead_letters=DeadLetterDesk(letters, definitions, store, directory),
        directory=directory,
        stats=stats,
        trusted_proxies=parse_networks(settings.trusted_proxies),
    )
    app = create_server(
        "forms",
        settings,
        [
            ServiceBinding(
                SERVICE_NAME,
                forms_pb2_grpc.add_FormsServiceServicer_to_server,
                FormsServicer(domain),
                optional_auth_methods=OPTIONAL_AUTH_METHODS,
            )
        ],
    )
    stats.export_to(ConsumerGauges(app.metrics.registry))
    stats.start(settings.stats_interval_s)
    app.on_stop.append(nc.drain)
    app.on_stop.append(cql.close)
    app.on_stop.append(statuses.stop)
    app.on_stop.append(stats.stop)
    return app


async def _build_process(settings: FormsSettings) -> ServiceServer:
    app = await build(settings)
    gc.freeze()  # what was built to serve lives as long as the process (see services/history/server.py)
    return app


def main() -> None:
    """Run the forms service until SIGTERM."""
    run("forms", FormsSettings, _build_process)
