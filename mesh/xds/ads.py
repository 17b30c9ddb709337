"""Envoy's Aggregated Discovery Service, state of the world, over a grpc.aio server.

One bidirectional stream per Envoy carries CDS and EDS. For each resource type the
stream remembers what Envoy subscribed to, the version and nonce last sent, and whether
Envoy accepted it:

- a request whose ``response_nonce`` is not the last one sent is stale and ignored;
- one with ``error_detail`` is a NACK: logged, and the rejected version is not sent again
  (the next change is);
- one with the last nonce and no error is an ACK; if it also changes the subscribed
  names (EDS after a CDS update), the new set is sent.

A change of the live replicas is pushed on every stream for every type whose content
changed (versions are content hashes). After a CDS response the next EDS request is
always answered, even with unchanged endpoints: Envoy waits for one to finish warming a
cluster it (re)created.

Nothing is answered before the source of replicas has loaded what it had at start: an
empty answer would take every endpoint away from an Envoy that still knows them (the
control plane restarted, NATS not yet reachable).

Messages are ``envoy-data-plane``'s betterproto2 types, (de)serialized by a generic
grpc.aio handler: the same server also serves grpc.health.v1 like every mesh process.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from mesh.xds.envoy_types import DiscoveryRequest, DiscoveryResponse
from mesh.xds.resources import CLUSTER_TYPE, ENDPOINT_TYPE, Snapshot
from services.runtime.registry import ReplicaTable

log = logging.getLogger("chatmesh.xds")

SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
STREAM_METHOD = f"/{SERVICE}/StreamAggregatedResources"
TYPES = (CLUSTER_TYPE, ENDPOINT_TYPE)


@dataclass
class _TypeState:
    """What one stream knows of one resource type."""

    names: frozenset[str] = frozenset()
    subscribed: bool = False
    nonce: str = ""
    sent_version: str | None = None
    rejected_version: str | None = None
    answer_next: bool = False
    """Answer the next request even if nothing changed (EDS after a CDS response)."""


@dataclass
class _Stream:
    peer: str
    states: dict[str, _TypeState] = field(default_factory=lambda: {t: _TypeState() for t in TYPES})
    nonces: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


class SnapshotCache:
    """The current :class:`Snapshot`, rebuilt when the replica table changes."""

    def __init__(self, table: ReplicaTable, build: Callable[[ReplicaTable], Snapshot]) -> None:
        self.table = table
        self._build = build
        self._version = -1
        self._snapshot = Snapshot()

    def current(self) -> Snapshot:
        """The snapshot of the table as it is now."""
        if self._version != self.table.version:
            self._snapshot = self._build(self.table)
            self._version = self.table.version
        return self._snapshot


class AdsServer:
    """Serves StreamAggregatedResources from a :class:`SnapshotCache`."""

    def __init__(self, cache: SnapshotCache) -> None:
        self._cache = cache
        self.streams = 0
        """Streams open now (tests and logs)."""

    def handler(self) -> grpc.GenericRpcHandler:
        """The generic handler to add to a grpc.aio server."""
        method = grpc.stream_stream_rpc_method_handler(
            self._serve,
            request_deserializer=DiscoveryRequest.parse,
            response_serializer=bytes,
        )
        return grpc.method_handlers_generic_handler(SERVICE, {"StreamAggregatedResources": method})

    async def _serve(
        self, requests: AsyncIterator[DiscoveryRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[DiscoveryResponse]:
        stream = _Stream(peer=context.peer())
        inbox: asyncio.Queue[DiscoveryRequest | None] = asyncio.Queue()

        async def read() -> None:
            try:
                async for request in requests:
                    await inbox.put(request)
            finally:
                await inbox.put(None)

        reader = asyncio.create_task(read(), name="ads-read")
        self.streams += 1
        log.info("envoy connected", extra={"peer": stream.peer})
        table = self._cache.table
        seen = table.version
        got: asyncio.Future[DiscoveryRequest | None] | None = None
        try:
            while True:
                if got is None:
                    got = asyncio.ensure_future(inbox.get())
                changed = asyncio.ensure_future(table.wait_changed(seen))
                waiting: list[asyncio.Future[Any]] = [got, changed]
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if changed in done:
                    seen = changed.result()
                else:
                    changed.cancel()
                if got in done:
                    request, got = got.result(), None
                    if request is None:
                        return
                    self._on_request(stream, request)
                for response in self._responses(stream):
                    yield response
        finally:
            if got is not None:
                got.cancel()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            self.streams -= 1
            log.info("envoy disconnected", extra={"peer": stream.peer})

    def _on_request(self, stream: _Stream, request: DiscoveryRequest) -> None:
        state = stream.states.get(request.type_url)
        if state is None:
            log.debug("request for a type not served; ignored", extra={"type_url": request.type_url})
            return
        if request.response_nonce and request.response_nonce != state.nonce:
            return  # stale: Envoy answers an older response; the newer one's answer follows
        names = frozenset(request.resource_names)
        if request.error_detail is not None and request.error_detail.code != 0:
            state.rejected_version = state.sent_version
            log.warning(
                "envoy rejected the configuration",
                extra={
                    "peer": stream.peer,
                    "type_url": request.type_url,
                    "version": state.sent_version,
                    "reason": request.error_detail.message[:500],
                },
            )
        elif not request.response_nonce or names != state.names:
            state.answer_next = True  # a first request, or a new subscription
        state.names = names
        state.subscribed = True

    def _responses(self, stream: _Stream) -> list[DiscoveryResponse]:
        if not self._cache.table.ready:
            return []
        snapshot = self._cache.current()
        responses = []
        for type_url in TYPES:
            state = stream.states[type_url]
            if not state.subscribed:
                continue
            version = snapshot.version(type_url, state.names)
            changed = version != state.sent_version and version != state.rejected_version
            if not (changed or state.answer_next):
                continue
            state.answer_next = False
            state.nonce = str(next(stream.nonces))
            state.sent_version = version
            responses.append(
                DiscoveryResponse(
                    version_info=version,
                    resources=snapshot.resources(type_url, state.names),
                    type_url=type_url,
                    nonce=state.nonce,
                )
            )
            if type_url == CLUSTER_TYPE:
                # Envoy asks for the endpoints of the clusters once it has built them; answer
                # that request, not before it (an answer before it would not end warming).
                stream.states[ENDPOINT_TYPE].answer_next = True
                break
        return responses
