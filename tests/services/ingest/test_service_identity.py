"""The mesh's service identity: a service token acts for a user only when it names them, and a
user's token can never act for someone else (x-chatmesh-on-behalf-of)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from chatmesh.ingest.v1 import ingest_pb2 as pb
from services.runtime.errors import Unauthenticated
from services.runtime.interceptors import ON_BEHALF_OF
from services.runtime.tokens import ServiceTokenSigner, TokenVerifier, generate_key_pair
from tests.conftest_ingest import IngestHandle, MeshKeys, new_user


async def names(ingest: IngestHandle, metadata: tuple[tuple[str, str], ...]) -> list[str]:
    listed = await ingest.stub.ListCollections(pb.ListCollectionsRequest(), metadata=metadata)
    return [c.name for c in listed.collections]


async def refused(ingest: IngestHandle, metadata: tuple[tuple[str, str], ...]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await names(ingest, metadata)
    return caught.value.code(), caught.value.details() or ""


async def test_a_service_token_acts_for_the_user_it_names(ingest: IngestHandle, mesh_keys: MeshKeys) -> None:
    ann = new_user(mesh_keys)
    await ingest.stub.CreateCollection(
        pb.CreateCollectionRequest(name="notes", vector_size=4, distance=pb.DISTANCE_DOT), metadata=ann.metadata
    )
    service = (("authorization", f"Bearer {mesh_keys.service_token('ingest-worker-1')}"), (ON_BEHALF_OF, ann.user_id))
    assert await names(ingest, service) == ["notes"]
    other = (service[0], (ON_BEHALF_OF, new_user(mesh_keys).user_id))
    assert await names(ingest, other) == []


async def test_a_user_token_may_not_act_for_another_user(ingest: IngestHandle, mesh_keys: MeshKeys) -> None:
    ann, bob = new_user(mesh_keys), new_user(mesh_keys)
    code, details = await refused(ingest, (*bob.metadata, (ON_BEHALF_OF, ann.user_id)))
    assert code == grpc.StatusCode.PERMISSION_DENIED and ON_BEHALF_OF in details


async def test_a_service_token_must_name_a_user_and_be_signed_with_the_service_key(
    ingest: IngestHandle, mesh_keys: MeshKeys, tmp_path: Path
) -> None:
    bearer = ("authorization", f"Bearer {mesh_keys.service_token()}")
    code, details = await refused(ingest, (bearer,))
    assert code == grpc.StatusCode.UNAUTHENTICATED and ON_BEHALF_OF in details
    code, _ = await refused(ingest, (bearer, (ON_BEHALF_OF, "not-a-user-id")))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    generate_key_pair(tmp_path / "k.pem", tmp_path / "k.pub.pem")
    forged = ServiceTokenSigner.from_file(tmp_path / "k.pem", "chatmesh", "mallory").token()
    code, _ = await refused(
        ingest, (("authorization", f"Bearer {forged}"), (ON_BEHALF_OF, new_user(mesh_keys).user_id))
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_a_verifier_without_the_service_key_refuses_service_tokens(mesh_keys: MeshKeys) -> None:
    verifier = TokenVerifier.from_file(mesh_keys.access.public, "chatmesh")
    with pytest.raises(Unauthenticated, match="not accepted"):
        verifier.verify(mesh_keys.service_token())
    both = TokenVerifier.from_file(mesh_keys.access.public, "chatmesh", mesh_keys.service.public)
    assert both.verify(mesh_keys.service_token("ingest")).service == "ingest"
    with pytest.raises(Unauthenticated):  # an access token is never read as a service token, or back
        TokenVerifier.from_file(mesh_keys.service.public, "chatmesh", mesh_keys.access.public).verify(
            mesh_keys.user_token(new_user(mesh_keys).user_id)
        )


def test_service_tokens_are_reused_until_near_expiry(mesh_keys: MeshKeys) -> None:
    signer = ServiceTokenSigner.from_file(mesh_keys.service.private, "chatmesh", "w", ttl_s=300)
    first = signer.token(now=1000.0)
    assert signer.token(now=1200.0) == first
    assert signer.token(now=1250.0) != first
