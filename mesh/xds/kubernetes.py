"""Live replicas from Kubernetes: the namespace's EndpointSlices, as registry records.

On Kubernetes the replicas do not write the KV registry: the kubelet's readiness probes
(native gRPC probes) and the EndpointSlice controller already say which pods of a Service
take traffic. This source lists and then watches the EndpointSlices of one namespace
through the maintained ``kubernetes`` client, turns each into :class:`ReplicaRecord` s
(:func:`records_from_slice`) and keeps a :class:`ReplicaTable` with them, so the xDS
server is the same whichever source feeds it.

The client is synchronous: the watch runs in a thread and hands each event to the event
loop. A watch that ends (timeout, a 410 Gone for a too-old resourceVersion, an API server
restart) is followed by a fresh list and watch; meanwhile the table keeps what it had.

RBAC: the control plane's ServiceAccount needs ``list`` and ``watch`` on
``endpointslices`` (API group ``discovery.k8s.io``) in its namespace (a Role and a
RoleBinding), and nothing else.

Mapping (``discovery.k8s.io/v1``): the slice's ``kubernetes.io/service-name`` label is the
service (cluster) name; the port named ``kubernetes_port_name`` (else the slice's first
port) is the gRPC port; each endpoint address is one replica, named after its pod
(``targetRef.name``), else its hostname, else its address. ``ready`` is SERVING; a
terminating endpoint that still serves is DRAINING (a rolling update's old pod finishing
its calls); any other is left out. The endpoint's ``zone`` is its locality.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

from services.runtime.registry import ReplicaRecord, ReplicaTable

log = logging.getLogger("chatmesh.xds.kubernetes")

SERVICE_LABEL = "kubernetes.io/service-name"
DEFAULT_ZONE = "local"
_NOT_A_NAME = re.compile(r"[^A-Za-z0-9_=-]")
_RETRY_S = 1.0


def _get(obj: Any, name: str) -> Any:
    """A field of a client model object, or of the same object as a plain dict (tests, raw JSON)."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)
        return obj.get(name, obj.get(camel))
    return getattr(obj, name, None)


def _port(ports: Iterable[Any] | None, port_name: str) -> int | None:
    ports = list(ports or [])
    for port in ports:
        if _get(port, "name") == port_name and _get(port, "port"):
            return int(_get(port, "port"))
    first = next((p for p in ports if _get(p, "port")), None)
    return int(_get(first, "port")) if first is not None else None


def _health(conditions: Any) -> str | None:
    ready = _get(conditions, "ready")
    serving = _get(conditions, "serving")
    terminating = bool(_get(conditions, "terminating"))
    # Kubernetes: a nil `ready` is to be read as ready; `serving` defaults to `ready`.
    if ready is None:
        ready = not terminating
    if serving is None:
        serving = ready
    if ready and not terminating:
        return "SERVING"
    if serving and terminating:
        return "DRAINING"
    return None


def slice_service(endpoint_slice: Any) -> str | None:
    """The Service an EndpointSlice belongs to (its ``kubernetes.io/service-name`` label)."""
    labels = _get(_get(endpoint_slice, "metadata"), "labels") or {}
    name = labels.get(SERVICE_LABEL)
    return str(name) if name else None


def records_from_slice(endpoint_slice: Any, port_name: str = "grpc") -> list[ReplicaRecord]:
    """The replicas an EndpointSlice lists, as registry records (see the module's mapping).

    Args:
        endpoint_slice: a ``V1EndpointSlice`` of the client, or the same object as a dict.
        port_name: name of the gRPC port.

    Returns:
        One record per address of each serving endpoint; empty for a slice of no Service,
        with no port, or of an address type other than IPv4/IPv6.
    """
    service = slice_service(endpoint_slice)
    port = _port(_get(endpoint_slice, "ports"), port_name)
    if service is None or port is None or _get(endpoint_slice, "address_type") not in ("IPv4", "IPv6"):
        return []
    records = []
    for endpoint in _get(endpoint_slice, "endpoints") or []:
        health = _health(_get(endpoint, "conditions"))
        if health is None:
            continue
        target = _get(endpoint, "target_ref")
        addresses = list(_get(endpoint, "addresses") or [])
        for index, address in enumerate(addresses):
            base = _get(target, "name") or _get(endpoint, "hostname") or address
            name = _NOT_A_NAME.sub("-", str(base))[:90] + (f"-{index}" if index else "")
            records.append(
                ReplicaRecord(
                    service=service,
                    replica=name,
                    host=str(address),
                    port=port,
                    health=health,
                    zone=_get(endpoint, "zone") or DEFAULT_ZONE,
                )
            )
    return records


class EndpointSliceSource:
    """Keeps a :class:`ReplicaTable` equal to the namespace's EndpointSlices.

    Args:
        namespace: the namespace to watch.
        port_name: name of the gRPC port in the slices.
        table: the table to keep (a new one by default).
        api: a ``DiscoveryV1Api``; by default one from the in-cluster config (else ~/.kube/config).
    """

    def __init__(
        self, namespace: str, port_name: str = "grpc", table: ReplicaTable | None = None, api: Any = None
    ) -> None:
        self.table = table or ReplicaTable()
        self._namespace = namespace
        self._port_name = port_name
        self._api = api
        self._slices: dict[str, list[ReplicaRecord]] = {}
        self._slice_services: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: Any = None

    def apply(self, event_type: str, endpoint_slice: Any) -> None:
        """Apply one list item or watch event (ADDED, MODIFIED, DELETED) to the table."""
        name = str(_get(_get(endpoint_slice, "metadata"), "name"))
        service = slice_service(endpoint_slice) or self._slice_services.get(name)
        if event_type == "DELETED":
            self._slices.pop(name, None)
        else:
            self._slices[name] = records_from_slice(endpoint_slice, self._port_name)
        if service is None:
            return
        self._slice_services[name] = service
        self._refresh(service)

    def replace(self, slices: Iterable[Any]) -> None:
        """Make the table the replicas of exactly ``slices`` (a fresh list)."""
        services = set(self._slice_services.values())
        self._slices = {}
        self._slice_services = {}
        for endpoint_slice in slices:
            name = str(_get(_get(endpoint_slice, "metadata"), "name"))
            service = slice_service(endpoint_slice)
            if service is None:
                continue
            self._slices[name] = records_from_slice(endpoint_slice, self._port_name)
            self._slice_services[name] = service
        for service in services | set(self._slice_services.values()):
            self._refresh(service)
        self.table.mark_ready()

    def _refresh(self, service: str) -> None:
        records = [r for n, rs in self._slices.items() if self._slice_services.get(n) == service for r in rs]
        self.table.replace_all(records, within=lambda key: key.startswith(f"{service}."))

    def start(self) -> None:
        """List and watch in a thread until :meth:`close`."""
        if self._thread is None:
            loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._run, args=(loop,), name="endpointslice-watch", daemon=True)
            self._thread.start()

    async def close(self) -> None:
        """Stop watching (the thread ends at its next event or watch timeout)."""
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()

    def _client(self) -> Any:
        if self._api is None:
            from kubernetes import client, config  # type: ignore[import-untyped]

            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            self._api = client.DiscoveryV1Api()
        return self._api

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        from kubernetes import watch

        while not self._stop.is_set():
            try:
                api = self._client()
                listed = api.list_namespaced_endpoint_slice(self._namespace)
                loop.call_soon_threadsafe(self.replace, list(listed.items))
                self._watch = watch.Watch()
                for event in self._watch.stream(
                    api.list_namespaced_endpoint_slice,
                    self._namespace,
                    resource_version=listed.metadata.resource_version,
                    timeout_seconds=300,
                ):
                    if self._stop.is_set():
                        break
                    loop.call_soon_threadsafe(self.apply, event["type"], event["object"])
            except Exception as exc:  # noqa: BLE001 - API server away, 410 Gone...: list and watch again
                log.warning("endpointslice watch failed; listing again", extra={"reason": str(exc)[:200]})
                self._stop.wait(_RETRY_S)
