"""What every service gets from services.runtime, seen from a client: auth, validation,
size limits, error mapping, health, reflection, metrics and graceful shutdown."""

from __future__ import annotations

import asyncio
import time
import urllib.request
import uuid
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from chatmesh.forms.v1 import forms_pb2, forms_pb2_grpc
from chatmesh.presence.v1 import presence_pb2, presence_pb2_grpc
from chatmesh.session.v1 import session_pb2, session_pb2_grpc
from services.runtime.server import ServiceBinding, ServiceServer, create_server
from services.runtime.settings import ServiceSettings
from services.runtime.tokens import Principal, TokenSigner, generate_key_pair, load_private_key
from tests.conftest import KeyPair


def _auth(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def _token(keys: KeyPair, *, now: float | None = None, ttl_s: int = 900) -> str:
    signer = TokenSigner(load_private_key(keys.private), "chatmesh", ttl_s)
    return signer.sign(Principal(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())), now).token


async def _presence_call(service: ServiceServer, metadata: tuple[tuple[str, str], ...] = ()) -> grpc.aio.AioRpcError:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        stub = presence_pb2_grpc.PresenceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetPresence(presence_pb2.GetPresenceRequest(user_ids=[str(uuid.uuid4())]), metadata=metadata)
        return err.value


async def test_a_call_without_a_token_is_unauthenticated(presence_service: ServiceServer) -> None:
    err = await _presence_call(presence_service)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_an_expired_token_is_unauthenticated_and_says_to_refresh(
    presence_service: ServiceServer, token_keys: KeyPair
) -> None:
    expired = _token(token_keys, now=time.time() - 3600, ttl_s=60)
    err = await _presence_call(presence_service, _auth(expired))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "expired" in (err.details() or "")


async def test_a_tampered_or_foreign_token_is_unauthenticated(
    presence_service: ServiceServer, token_keys: KeyPair, tmp_path: Path
) -> None:
    token = _token(token_keys)
    header, payload, signature = token.split(".")
    forged_payload = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB")
    foreign = KeyPair(tmp_path / "other.pem", tmp_path / "other.pub.pem")
    generate_key_pair(foreign.private, foreign.public)
    for bad in (f"{header}.{forged_payload}.{signature}", token[:-3] + "abc", "not-a-jwt", _token(foreign)):
        err = await _presence_call(presence_service, _auth(bad))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, bad
        assert bad not in (err.details() or ""), "the token must never be echoed"


class _UnfinishedForms(forms_pb2_grpc.FormsServiceServicer):
    """A servicer that implements nothing (the generated base raises NotImplementedError)."""


async def test_an_unimplemented_rpc_with_a_valid_token_says_unimplemented(token_keys: KeyPair) -> None:
    name = forms_pb2.DESCRIPTOR.services_by_name["FormsService"].full_name
    app = create_server(
        "unfinished",
        ServiceSettings(port=0, token_public_key_file=token_keys.public, shutdown_drain_s=0),
        [ServiceBinding(name, forms_pb2_grpc.add_FormsServiceServicer_to_server, _UnfinishedForms())],
    )
    async with app, grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = forms_pb2_grpc.FormsServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListForms(forms_pb2.ListFormsRequest(), metadata=_auth(_token(token_keys)))
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "/chatmesh.forms.v1.FormsService/ListForms" in (err.value.details() or "")


async def test_a_request_breaking_a_rule_is_invalid_argument_naming_the_field(
    presence_service: ServiceServer, token_keys: KeyPair
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{presence_service.port}") as channel:
        stub = presence_pb2_grpc.PresenceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetPresence(
                presence_pb2.GetPresenceRequest(user_ids=[str(uuid.uuid4()), "not-a-uuid"]),
                metadata=_auth(_token(token_keys)),
            )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("user_ids[1]: ")


async def test_public_rpcs_are_validated_too(session_service: ServiceServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{session_service.port}") as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Register(
                session_pb2.RegisterRequest(username="Bad Name!", password="long enough", device_name="a")
            )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("username: ")


async def test_an_oversized_message_is_resource_exhausted_and_the_server_keeps_serving(
    session_service: ServiceServer,
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{session_service.port}") as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Register(
                session_pb2.RegisterRequest(username="big", password="x" * (2 * 1024 * 1024), device_name="a")
            )
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service="chatmesh.session.v1.SessionService"))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_service_and_health(presence_service: ServiceServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{presence_service.port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = [s.name async for r in responses for s in r.list_services_response.service]
    assert "chatmesh.presence.v1.PresenceService" in names
    assert "grpc.health.v1.Health" in names


async def test_reflection_is_a_setting_and_off_means_not_served(token_keys: KeyPair) -> None:
    name = forms_pb2.DESCRIPTOR.services_by_name["FormsService"].full_name
    app = create_server(
        "private",
        ServiceSettings(port=0, token_public_key_file=token_keys.public, shutdown_drain_s=0, reflection=False),
        [ServiceBinding(name, forms_pb2_grpc.add_FormsServiceServicer_to_server, _UnfinishedForms())],
    )
    async with app, grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            _ = [r async for r in responses]
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_reflection_describes_a_method_by_its_symbol(presence_service: ServiceServer) -> None:
    """`grpcurl describe pkg.Service.Method` asks for the file containing the method's symbol."""
    symbols = ["chatmesh.presence.v1.PresenceService.Heartbeat", "chatmesh.presence.v1.PresenceService.Nope"]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{presence_service.port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = [reflection_pb2.ServerReflectionRequest(file_containing_symbol=s) for s in symbols]
        answers = [r async for r in stub.ServerReflectionInfo(iter(requests))]
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(b)
        for b in answers[0].file_descriptor_response.file_descriptor_proto
    ]
    assert "chatmesh/presence/v1/presence.proto" in [f.name for f in files]
    assert answers[1].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


async def test_metrics_count_calls_by_method_and_code(session_service: ServiceServer) -> None:
    metrics_port = session_service.metrics.serve("127.0.0.1", 0)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{session_service.port}") as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        for _ in range(2):
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.ListDevices(session_pb2.ListDevicesRequest())
    text = await asyncio.to_thread(
        lambda: urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
    )
    assert (
        'chatmesh_rpc_total{code="UNAUTHENTICATED",method="/chatmesh.session.v1.SessionService/ListDevices",'
        'service="session"} 2.0' in text
    )
    assert "chatmesh_rpc_duration_seconds_bucket" in text


async def test_stopping_says_not_serving_before_it_stops(presence_service: ServiceServer) -> None:
    presence_service.settings = presence_service.settings.model_copy(update={"shutdown_drain_s": 0.5})
    async with grpc.aio.insecure_channel(f"127.0.0.1:{presence_service.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        stopping = asyncio.create_task(presence_service.stop())
        await asyncio.sleep(0.2)
        reply = await health.Check(health_pb2.HealthCheckRequest(service="chatmesh.presence.v1.PresenceService"))
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        await stopping
