"""The forms worker process (``python -m services.forms.worker``): runs every enabled consumer plug-in.

Each consumer is a durable JetStream pull consumer; every worker process pulls from the
same durables, so more processes share the load. Metrics on ``metrics_port``
(``/metrics``; the supervisor waits for it). SIGTERM finishes the batches in hand,
flushes (the sheets are rendered) and stops.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from services.forms.commits import CommitBook
from services.forms.consumers import default_registry
from services.forms.consumers.base import ConsumerContext, ConsumerRegistry
from services.forms.deadletters import DeadLetters
from services.forms.definitions import FormDefinitions
from services.forms.directory import ConsumerDirectory
from services.forms.metrics import WorkerMetrics
from services.forms.runner import ConsumerRunner
from services.forms.settings import FormsSettings
from services.forms.store import SCHEMA, FormStore
from services.forms.streams import DEFS_CHANGED_SUBJECT, STREAMS
from services.runtime.bus import AckedPublisher, connect, ensure_stream
from services.runtime.collector import tune_collector
from services.runtime.cql import CqlSession
from services.runtime.errors import ChatmeshError
from services.runtime.logs import configure_logging
from services.runtime.objectstore import ObjectStore
from services.runtime.settings import load_settings

log = logging.getLogger("chatmesh.forms.worker")

STOP_STEP_S = 60.0
"""Longest a consumer (its last batch, the sheets' last render) or a connection may take to stop."""


@dataclass
class FormsWorker:
    """A running worker: its consumers' runners and what they share."""

    runners: list[ConsumerRunner]
    metrics_port: int
    book: CommitBook | None = None
    _stops: list[object] = field(default_factory=list)
    _http: WSGIServer | None = None

    def runner(self, name: str) -> ConsumerRunner:
        """The runner of one consumer."""
        return next(r for r in self.runners if r.spec.name == name)

    async def stop(self) -> None:
        """Finish the batches in hand, close the plug-ins, disconnect (each step bounded in time)."""
        for runner in self.runners:
            try:
                await asyncio.wait_for(runner.stop(), STOP_STEP_S)
            except TimeoutError:
                log.error("consumer did not stop in time", extra={"consumer": runner.spec.name})
        for stop in reversed(self._stops):
            try:
                await asyncio.wait_for(stop(), STOP_STEP_S)  # type: ignore[operator]
            except Exception:  # noqa: BLE001 - one failed cleanup must not skip the others
                log.exception("cleanup failed")
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()


async def start_worker(settings: FormsSettings, registry: ConsumerRegistry | None = None) -> FormsWorker:
    """Connect, declare the streams and durables, and start every enabled consumer of ``registry``."""
    registry = registry or default_registry()
    cql = await CqlSession.connect(settings.cql, SCHEMA)
    nc = await connect(settings.nats, settings.worker_name)
    js = nc.jetstream(timeout=settings.nats.publish_timeout_s)
    for stream in STREAMS:
        await ensure_stream(js, stream)
    store = FormStore(cql)
    definitions = FormDefinitions(store, settings.form_cache_size, settings.form_cache_ttl_s)

    async def on_form_changed(msg: object) -> None:
        definitions.forget(msg.data.decode())  # type: ignore[attr-defined]

    await nc.subscribe(DEFS_CHANGED_SUBJECT, cb=on_form_changed)
    publisher = AckedPublisher(nc)
    directory = ConsumerDirectory(js, settings.consumers_cache_s)
    dead = DeadLetters(nc, publisher, store, settings.nats.publish_timeout_s)
    metrics_registry = CollectorRegistry(auto_describe=True)
    metrics = WorkerMetrics(metrics_registry)
    context = ConsumerContext(settings, store, definitions, nc, ObjectStore(settings.s3))
    book = CommitBook(nc, store, directory, publisher, settings.nats.publish_timeout_s)
    runners = []
    for spec in registry.specs(settings):
        plugin = spec.cls(context)
        override = settings.consumers.get(spec.name)
        if override is None or override.batch_size is None:
            spec = dataclasses.replace(spec, batch_size=plugin.batch_size)  # a plug-in may size itself from settings
        runners.append(
            ConsumerRunner(
                plugin, spec, nc, store, dead, directory, publisher, metrics, settings.nats.publish_timeout_s, book
            )
        )
        if spec.enabled and spec.required:
            book.local.add(spec.name)
    worker = FormsWorker(runners, 0, book)
    # Stopped in reverse: the book's held deliveries are checked before NATS and CQL close.
    worker._stops += [cql.close, nc.close, book.stop]  # not drain: pull requests in flight would hold it 30 s
    await book.start()
    for runner in runners:
        await runner.start()
    if settings.metrics_port:
        worker._http, _ = start_http_server(settings.metrics_port, addr=settings.host, registry=metrics_registry)
        worker.metrics_port = int(worker._http.server_port)
    log.info("worker running", extra={"consumers": ",".join(r.spec.name for r in runners if r.spec.enabled)})
    return worker


async def _serve(settings: FormsSettings) -> None:
    worker = await start_worker(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    await worker.stop()


def main() -> None:
    """Run the worker until SIGTERM."""
    settings = load_settings(FormsSettings)
    configure_logging(settings.worker_name, settings.log_level)
    tune_collector(settings.worker_gc_young_threshold)
    try:
        asyncio.run(_serve(settings))
    except ChatmeshError as exc:  # NATS or CQL unreachable at start
        log.error("start failed", extra={"reason": str(exc)})
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
