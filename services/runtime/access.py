"""Who may call each RPC, read from the contract's ``(chatmesh.common.v1.access)`` option.

The same descriptors feed the gateway (which routes need a token at the edge, which are
never forwarded) and every service's AuthLayer, so there is one list, in the .proto files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatmesh.common.v1 import access_pb2


@dataclass(frozen=True)
class MethodAccess:
    """The method paths (``/pkg.Service/Method``) of one service by who may call them."""

    public: frozenset[str]
    optional: frozenset[str]
    internal: frozenset[str]


def access_of(method: Any) -> int:
    """The ``Access`` value of a MethodDescriptor (unset: ACCESS_AUTHENTICATED)."""
    value: int = method.GetOptions().Extensions[access_pb2.access]
    return value or access_pb2.ACCESS_AUTHENTICATED


def method_access(service: Any) -> MethodAccess:
    """The access lists of a ServiceDescriptor."""
    by: dict[int, set[str]] = {}
    for method in service.methods:
        by.setdefault(access_of(method), set()).add(f"/{service.full_name}/{method.name}")
    return MethodAccess(
        public=frozenset(by.get(access_pb2.ACCESS_PUBLIC, ())),
        optional=frozenset(by.get(access_pb2.ACCESS_OPTIONAL, ())),
        internal=frozenset(by.get(access_pb2.ACCESS_INTERNAL, ())),
    )
