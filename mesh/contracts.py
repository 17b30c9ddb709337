"""The mesh's contracts as data: which services exist and which of their RPCs stream.

Read from the generated descriptors, so the gateway's routes and the catalog's
reflection follow the .proto files without a hand-kept list.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

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
    )


def load_all() -> list[ServiceContract]:
    """Every chatmesh service's contract, in start order."""
    return [load(name) for name in SERVICES]
