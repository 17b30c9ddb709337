"""The fuzzed mesh: the shared live mesh (``python -m mesh up``: real NATS, Cassandra, Envoy) and a user.

With CHATMESH_FUZZ_RUNNING_MESH=1 it fuzzes the mesh already running (``make up``, its
CHATMESH_MESH_* settings) instead of starting one. The fuzzer calls each service on its
own port (raw gRPC, the bytes exactly as built) and the gateway (gRPC-web). Tokens are
signed with the mesh's own access-token key, for a user who owns a conversation, so
generated ids sometimes name something that exists.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import pytest

from chatmesh.history.v1 import history_pb2, history_pb2_grpc
from mesh.contracts import load_all
from mesh.settings import MeshSettings
from services.runtime.clients import HEADER as CLIENT_ADDRESS
from services.runtime.interceptors import ON_BEHALF_OF
from services.runtime.tokens import Principal, ServiceTokenSigner, TokenSigner, load_private_key
from tests.conftest_mesh import LiveMesh
from tests.fuzz.messages import Rpc


@dataclass
class FuzzMesh:
    """Where each service listens, who calls, and the ids that exist."""

    mesh: LiveMesh
    targets: dict[str, str]
    """Service short name -> 127.0.0.1:port."""
    full_names: dict[str, str]
    """Service short name -> its full gRPC name (health checks)."""
    signer: TokenSigner
    user_id: str
    service_signer: ServiceTokenSigner | None = None
    """Signs the service tokens internal RPCs take (the mesh's service_token.pem)."""
    known: list[str] = field(default_factory=list)
    """Ids that exist (the user's, their conversation's): generated strings are sometimes these."""
    by_field: dict[str, str] = field(default_factory=dict)
    """Existing values by field name, for the plausible seed requests the mutations start from."""
    channels: dict[str, grpc.Channel] = field(default_factory=dict)

    client_address: str = field(default_factory=lambda: f"198.51.100.{random.randrange(1, 255)}")
    """The address the fuzzer's direct calls come from (TEST-NET-2; services trust the header from loopback):
    its failed logins and throttles are its own, not those of the other tests' 127.0.0.1."""

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """A valid user token (a fresh device and session each call: a fuzzed Logout revokes only its own)."""
        principal = Principal(self.user_id, str(uuid.uuid4()), str(uuid.uuid4()))
        return (("authorization", f"Bearer {self.signer.sign(principal).token}"), (CLIENT_ADDRESS, self.client_address))

    def metadata_for(self, rpc: Rpc) -> tuple[tuple[str, str], ...]:
        """What a legitimate caller of ``rpc`` sends: a user's token; for an internal RPC, a service's for one."""
        if not rpc.internal or self.service_signer is None:
            return self.metadata()
        return (
            ("authorization", f"Bearer {self.service_signer.token()}"),
            (ON_BEHALF_OF, self.user_id),
            (CLIENT_ADDRESS, self.client_address),
        )

    def channel(self, service: str) -> grpc.Channel:
        """A channel to ``service`` (kept for the run)."""
        if service not in self.channels:
            self.channels[service] = grpc.insecure_channel(self.targets[service])
        return self.channels[service]


def running_mesh() -> LiveMesh:
    """The mesh ``make up`` runs (CHATMESH_MESH_* as it was started with)."""
    settings = MeshSettings()
    env = {
        "CHATMESH_MESH_GATEWAY_PORT": str(settings.gateway_port),
        "CHATMESH_MESH_SERVICE_BASE_PORT": str(settings.service_base_port),
    }
    return LiveMesh(env=env, state_dir=settings.state_dir)


@pytest.fixture(scope="session")
def fuzz_mesh(request: pytest.FixtureRequest) -> Iterator[FuzzMesh]:
    """The live mesh as the fuzzer sees it, with one conversation of the fuzzing user."""
    if os.environ.get("CHATMESH_FUZZ_RUNNING_MESH", "") not in ("", "0"):
        live_mesh = running_mesh()
    else:
        live_mesh = request.getfixturevalue("live_mesh")
    base = int(live_mesh.env["CHATMESH_MESH_SERVICE_BASE_PORT"])
    contracts = load_all()
    signer = TokenSigner(load_private_key(live_mesh.state_dir / "keys" / "access_token.pem"), "chatmesh", 900)
    fm = FuzzMesh(
        mesh=live_mesh,
        targets={c.name: f"127.0.0.1:{base + i}" for i, c in enumerate(contracts)},
        full_names={c.name: c.full_name for c in contracts},
        signer=signer,
        user_id=str(uuid.uuid4()),
    )
    service_key = live_mesh.state_dir / "keys" / "service_token.pem"
    if service_key.exists():
        fm.service_signer = ServiceTokenSigner.from_file(service_key, "chatmesh", "fuzzer")
    created = history_pb2_grpc.HistoryServiceStub(fm.channel("history")).CreateConversation(
        history_pb2.CreateConversationRequest(kind=history_pb2.CONVERSATION_KIND_ASSISTANT),
        metadata=fm.metadata(),
        timeout=30,
    )
    conversation_id = created.conversation.conversation_id
    fm.known = [fm.user_id, conversation_id]
    fm.by_field = {"conversation_id": conversation_id, "user_id": fm.user_id, "peer_user_id": fm.user_id}
    try:
        yield fm
    finally:
        for channel in fm.channels.values():
            channel.close()
