"""The mesh's contracts as data: which services exist and which of their RPCs stream.

Read from the generated descriptors, so the gateway's routes and the catalog's
reflection follow the .proto files without a hand-kept list.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2

from chatmesh.common.v1 import access_pb2
from gateway.routes import RouteSpec
from services.runtime.access import method_access

SERVICES = ("session", "history", "presence", "inference", "ingest", "forms")


@dataclass(frozen=True)
class ServiceContract:
    """One chatmesh service as its contract describes it."""

    name: str
    """Short name ("session"), also the folder under services/."""
    package: str
    """Proto package ("chatmesh.session.v1")."""
    full_name: str
    """Full service name ("chatmesh.session.v1.SessionService")."""
    server_streaming: tuple[str, ...]
    """Paths ("/pkg.Service/Method") of RPCs whose responses stream."""
    client_streaming: tuple[str, ...]
    """Paths of RPCs whose requests stream (SDK-only: gRPC-web cannot carry them)."""
    public: tuple[str, ...] = ()
    """Paths of RPCs anyone may call without a token (ACCESS_PUBLIC)."""
    optional_auth: tuple[str, ...] = ()
    """Paths of RPCs that take calls with or without a token (ACCESS_OPTIONAL)."""
    internal: tuple[str, ...] = ()
    """Paths of RPCs only services may call (ACCESS_INTERNAL): never routed from outside."""
    retry_safe: tuple[str, ...] = ()
    """Paths of unary RPCs safe to repeat (NO_SIDE_EFFECTS, or ``(chatmesh.common.v1.retry_safe)``):
    the gateway retries them on another replica after UNAVAILABLE or a reset."""


def is_retry_safe(method: Any) -> bool:
    """True for a unary MethodDescriptor that is read-only or marked ``retry_safe`` in the contract."""
    if method.client_streaming or method.server_streaming:
        return False
    options = method.GetOptions()
    no_side_effects = options.idempotency_level == descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS
    return bool(no_side_effects or options.Extensions[access_pb2.retry_safe])


def load(name: str) -> ServiceContract:
    """The contract of service ``name``."""
    module = importlib.import_module(f"chatmesh.{name}.v1.{name}_pb2")
    (service,) = module.DESCRIPTOR.services_by_name.values()
    server_streaming = []
    client_streaming = []
    for method in service.methods:
        path = f"/{service.full_name}/{method.name}"
        if method.server_streaming:
            server_streaming.append(path)
        if method.client_streaming:
            client_streaming.append(path)
    access = method_access(service)
    return ServiceContract(
        name=name,
        package=module.DESCRIPTOR.package,
        full_name=service.full_name,
        server_streaming=tuple(server_streaming),
        client_streaming=tuple(client_streaming),
        public=tuple(sorted(access.public)),
        optional_auth=tuple(sorted(access.optional)),
        internal=tuple(sorted(access.internal)),
        retry_safe=tuple(sorted(f"/{service.full_name}/{m.name}" for m in service.methods if is_retry_safe(m))),
    )


def load_all() -> list[ServiceContract]:
    """Every chatmesh service's contract, in start order."""
    return [load(name) for name in SERVICES]


def route_specs(contracts: list[ServiceContract]) -> list[RouteSpec]:
    """The gateway's route of each contract's package: streaming, access and retry-safe methods.

    One source for every Envoy the project renders (`make up`, the Kubernetes bootstrap, tests),
    so none of them drifts (the Kubernetes one had lost the retry policies).
    """
    return [
        RouteSpec(
            package=c.package,
            cluster=c.name,
            streaming_methods=list(c.server_streaming),
            client_streaming_methods=list(c.client_streaming),
            public_methods=list(c.public),
            optional_auth_methods=list(c.optional_auth),
            internal_methods=list(c.internal),
            retry_safe_methods=list(c.retry_safe),
        )
        for c in contracts
    ]
