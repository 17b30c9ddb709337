"""Building and running a service's gRPC server.

``create_server`` builds (tests call it on port 0 in-process); ``serve`` runs until
SIGTERM/SIGINT, then drains: DRAINING in the registry and health NOT_SERVING, the
``on_drain`` hooks, a pause for load balancers to notice (``shutdown_drain_s``),
``server.stop(grace)``, deregistration, then the service's own cleanup.

When the settings name a NATS (``settings.nats``) and ``settings.registry_enabled`` is on, the
replica registers itself in the mesh's registry (:mod:`services.runtime.registry`) once it
serves, so the xDS control plane gives Envoy its address. NATS unreachable at start or
later changes nothing for the calls it serves: it keeps trying to register and heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.runtime.access import method_access
from services.runtime.bus import connect
from services.runtime.clients import parse_networks
from services.runtime.collector import tune_collector
from services.runtime.errors import ChatmeshError
from services.runtime.interceptors import (
    AuthLayer,
    ConcurrencyLayer,
    DeadlineLayer,
    DrainLayer,
    ErrorLayer,
    MetricsLayer,
    RuntimeInterceptor,
    ValidationLayer,
)
from services.runtime.logs import configure_logging
from services.runtime.metrics import RpcMetrics
from services.runtime.registry import Registration, ReplicaRecord
from services.runtime.revocation import RevocationList
from services.runtime.settings import ServiceSettings, load_settings
from services.runtime.tokens import TokenVerifier

log = logging.getLogger("chatmesh.server")

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


@dataclass(frozen=True)
class ServiceBinding:
    """One gRPC service to serve: its full name, the generated ``add_..._to_server`` and the servicer."""

    full_name: str
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    servicer: Any
    public_methods: Collection[str] = ()
    #: Methods that take calls with or without a token (AuthLayer's ``optional_methods``).
    optional_auth_methods: Collection[str] = ()
    #: Server streams that run to their end when the server drains (generations); every other
    #: stream is told to reconnect (DrainLayer).
    finishing_methods: Collection[str] = ()
    #: Request decoders that replace a method's generated one (full method name to decoder):
    #: a decoder returns the ordinary message, or a ``Prevalidated`` it checked itself.
    request_decoders: Mapping[str, Callable[[bytes], Any]] = field(default_factory=dict)


@dataclass
class ServiceServer:
    """A built, not yet started, server and what it owns."""

    name: str
    settings: ServiceSettings
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    metrics: RpcMetrics
    service_names: Sequence[str]
    port: int
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    metrics_port: int = 0
    on_start: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    """Run once serving has started (background tasks of the service)."""
    concurrency: ConcurrencyLayer | None = None
    drain: DrainLayer = field(default_factory=DrainLayer)
    """Ended at the start of ``stop()``: open streams are told to reconnect."""
    revocations: RevocationList | None = None
    """Followed from NATS while serving, when the settings name a NATS (``settings.nats``)."""
    on_drain: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    """Run when draining starts, before the drain pause (tell server streams to reconnect elsewhere)."""
    registration: Registration | None = None
    """This replica's record in the registry, once registered."""
    _revocation_nats: Any = None
    _registry_nats: Any = None
    _registering: asyncio.Task[None] | None = None
    _revocations_connecting: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start serving, mark every service SERVING, and register the replica (with a NATS)."""
        await self._follow_revocations()
        await self.server.start()
        for name in [*self.service_names, ""]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        for hook in self.on_start:
            await hook()
        await self._register()
        log.info("serving", extra={"port": self.port, "services": ",".join(self.service_names)})

    async def __aenter__(self) -> ServiceServer:
        """``async with await build(settings) as app``: started inside, stopped on the way out."""
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Drain and stop: DRAINING and NOT_SERVING, the drain hooks, wait the drain time, streams told
        to reconnect, stop with grace, deregister, run cleanups.

        The drain time lets load balancers (Envoy through xDS, peers' channels through health)
        stop sending new calls here before streams are ended, so their clients reconnect to
        another replica.
        """
        if self._registering is not None:
            self._registering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._registering
            self._registering = None
        if self.registration is not None:
            await self.registration.set_health("DRAINING")
        await self.health.enter_graceful_shutdown()
        for hook in self.on_drain:
            try:
                await hook()
            except Exception:  # noqa: BLE001 - a failed hook must not keep the replica from stopping
                log.exception("drain hook failed")
        if self.settings.shutdown_drain_s:
            await asyncio.sleep(self.settings.shutdown_drain_s)
        self.drain.begin()
        await self.server.stop(self.settings.shutdown_grace_s)
        if self.registration is not None:
            await self.registration.stop()
            self.registration = None
        if self._registry_nats is not None:
            with contextlib.suppress(Exception):
                await self._registry_nats.close()
        for cleanup in reversed(self.on_stop):
            try:
                await cleanup()
            except Exception:  # noqa: BLE001 - one failed cleanup must not skip the others
                log.exception("cleanup failed")
        if self._revocations_connecting is not None:
            self._revocations_connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._revocations_connecting
        if self.revocations is not None:
            await self.revocations.close()
        if self._revocation_nats is not None:
            with contextlib.suppress(Exception):
                await self._revocation_nats.close()
        self.metrics.close()
        log.info("stopped")

    def replica_record(self) -> ReplicaRecord:
        """This replica as the registry lists it (SERVING, the bound port)."""
        s = self.settings
        return ReplicaRecord(
            service=self.name,
            replica=s.replica or self.name,
            host=s.advertise_host or s.host,
            port=self.port,
            health="SERVING",
            zone=s.zone,
            started_at=time.time(),
            ttl_s=s.registry_ttl_s,
        )

    async def _register(self) -> None:
        nats_settings = getattr(self.settings, "nats", None)
        if not self.settings.registry_enabled or nats_settings is None:
            return
        registering = asyncio.create_task(self._connect_and_register(self.replica_record()), name="registry-connect")
        try:
            # Registered before start() returns when NATS answers; else in the background (a
            # first connect to a NATS that is down waits for it: nats-py reconnects forever).
            await asyncio.wait_for(asyncio.shield(registering), nats_settings.connect_timeout_s)
        except TimeoutError:
            log.warning("NATS unreachable at start: registering once it is")
            self._registering = registering

    async def _connect_and_register(self, record: ReplicaRecord) -> None:
        nats_settings = getattr(self.settings, "nats")  # noqa: B009 - checked by _register
        while self._registry_nats is None:
            try:
                self._registry_nats = await connect(nats_settings, f"{self.name}-registry")
            except ChatmeshError:
                await asyncio.sleep(1.0)
        await self._start_registration(record)

    async def _start_registration(self, record: ReplicaRecord) -> None:
        s = self.settings
        registration = Registration(self._registry_nats.jetstream(), record, s.registry_ttl_s, s.registry_heartbeat_s)
        await registration.start()
        self.registration = registration

    async def _follow_revocations(self) -> None:
        nats_settings = getattr(self.settings, "nats", None)
        if self.revocations is None or nats_settings is None:
            return
        revocations = self.revocations

        async def follow() -> None:
            while self._revocation_nats is None:
                try:
                    self._revocation_nats = await connect(nats_settings, f"{self.name}-revocations")
                except ChatmeshError:
                    await asyncio.sleep(1.0)
            revocations.follow(self._revocation_nats)

        following = asyncio.create_task(follow(), name="revocations-connect")
        try:
            # nats-py retries a first connect forever (reconnects are unlimited): bound the wait.
            await asyncio.wait_for(asyncio.shield(following), nats_settings.connect_timeout_s)
        except TimeoutError:
            log.warning("NATS unreachable at start: revoked sessions are not followed until it is")
            self._revocations_connecting = following
            return
        if not await self.revocations.wait_ready(5.0):
            log.warning("the revocation list did not load within 5s; following it in the background")


class _ReflectionPool:
    """The default descriptor pool, plus lookups of methods (``pkg.Service.Method``) by symbol.

    protobuf's upb pool finds services and messages but not methods, so ``grpcurl describe
    chatmesh.history.v1.HistoryService.SendMessage`` would answer "Symbol not found".
    """

    def __init__(self, pool: descriptor_pool.DescriptorPool) -> None:
        self._pool = pool

    def FindFileContainingSymbol(self, symbol: str) -> Any:  # noqa: N802 (the pool's API)
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            service_name, _, method = symbol.rpartition(".")
            try:
                service = self._pool.FindServiceByName(service_name)
            except KeyError:
                service = None
            if service is None or method not in service.methods_by_name:
                raise
            return service.file

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


def create_server(
    name: str,
    settings: ServiceSettings,
    bindings: Sequence[ServiceBinding],
    *,
    reflection_names: Sequence[str] = (),
    verifier: TokenVerifier | None = None,
) -> ServiceServer:
    """Build a server for ``bindings`` with the runtime's interceptors, health and reflection.

    Args:
        name: short service name ("session"), used for metrics and logs.
        settings: the service's settings.
        bindings: the gRPC services it serves.
        reflection_names: extra service names to list in reflection (the gateway's catalog).
        verifier: verifies access tokens; defaults to one built from ``token_public_key_file``.
    """
    if verifier is None and settings.token_public_key_file is not None:
        verifier = TokenVerifier.from_file(
            settings.token_public_key_file, settings.token_issuer, settings.service_token_public_key_file
        )
    if verifier is not None and verifier.revocations is None:
        verifier.revocations = RevocationList()
    metrics = RpcMetrics(name)
    public = {m for b in bindings for m in b.public_methods}
    optional = {m for b in bindings for m in b.optional_auth_methods}
    internal: set[str] = set()
    pool = descriptor_pool.Default()
    for binding in bindings:
        try:
            access = method_access(pool.FindServiceByName(binding.full_name))
        except KeyError:
            continue
        public |= access.public
        optional |= access.optional
        internal |= access.internal
    concurrency = ConcurrencyLayer(
        settings.max_calls_per_caller, settings.max_streams_per_caller, parse_networks(settings.trusted_proxies)
    )
    drain = DrainLayer({m for b in bindings for m in b.finishing_methods})
    server = grpc.aio.server(
        interceptors=[
            RuntimeInterceptor(
                [
                    MetricsLayer(metrics),
                    ErrorLayer(),
                    DeadlineLayer(settings.default_deadline_s),
                    drain,
                    AuthLayer(verifier, public, optional, internal),
                    concurrency,
                    ValidationLayer(),
                ],
                first_message_timeout_s=settings.first_message_timeout_s,
                decoders={m: d for b in bindings for m, d in b.request_decoders.items()},
            )
        ],
        options=[
            ("grpc.max_receive_message_length", settings.max_receive_message_bytes),
            ("grpc.max_send_message_length", settings.max_send_message_bytes),
            ("grpc.max_concurrent_streams", settings.max_concurrent_streams),
            ("grpc.server.max_pending_requests", settings.max_pending_calls),
            ("grpc.server.max_pending_requests_hard_limit", 2 * settings.max_pending_calls),
            ("grpc.keepalive_time_ms", settings.keepalive_time_s * 1000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    for binding in bindings:
        binding.add_to_server(binding.servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [b.full_name for b in bindings]
    if settings.reflection:
        reflection.enable_server_reflection(
            [
                *names,
                *reflection_names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            server,
            pool=_ReflectionPool(descriptor_pool.Default()),
        )
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    if port == 0:
        raise RuntimeError(f"could not bind {settings.host}:{settings.port}")
    result = ServiceServer(name, settings, server, health_servicer, metrics, [*names, *reflection_names], port)
    result.concurrency = concurrency
    result.drain = drain
    if verifier is not None and verifier.revocations is not None:
        result.revocations = verifier.revocations
    if settings.metrics_port:
        result.metrics_port = metrics.serve(settings.host, settings.metrics_port)
    return result


async def serve(build: Callable[[], Awaitable[ServiceServer]]) -> None:
    """Build, start, and run the server until SIGTERM or SIGINT, then stop it gracefully."""
    app = await build()
    await app.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    await app.stop()


def run(name: str, settings_cls: type[SettingsT], build: Callable[[SettingsT], Awaitable[ServiceServer]]) -> None:
    """The ``main`` of every service: load settings, configure logs, serve until SIGTERM."""
    settings = load_settings(settings_cls)
    configure_logging(name, settings.log_level)
    tune_collector(settings.gc_young_threshold)
    try:
        asyncio.run(serve(lambda: build(settings)))
    except ChatmeshError as exc:  # a dependency unreachable at start, a missing key file...
        log.error("start failed", extra={"reason": str(exc)})
        raise SystemExit(1) from None
