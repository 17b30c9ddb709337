"""Login throttling over gRPC: an attacker's failures slow the attacker, never the owner elsewhere.

The client address is what the gateway says in ``x-chatmesh-client-address`` (these calls
come from loopback, a trusted proxy by default, as the gateway's do).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
import pytest

from chatmesh.session.v1 import session_pb2 as pb
from chatmesh.session.v1 import session_pb2_grpc
from mesh.deps.nats import Nats
from services.runtime.bus import NatsSettings
from services.runtime.cql import CqlSettings
from services.session.server import build
from services.session.settings import SessionSettings
from tests.conftest import KeyPair

PASSWORD = "correct horse battery"
ATTACKER, OWNER = "203.0.113.7", "198.51.100.20"


@pytest.fixture
def session_overrides() -> dict[str, Any]:
    return {"login_free_failures": 3, "login_backoff_base_s": 0.2, "login_backoff_max_s": 60}


def _from(address: str) -> tuple[tuple[str, str]]:
    return (("x-chatmesh-client-address", address),)


async def _login(stub: session_pb2_grpc.SessionServiceStub, username: str, password: str, address: str) -> Any:
    return await stub.Login(
        pb.LoginRequest(username=username, password=password, device_name="d"), metadata=_from(address)
    )


async def _refused(
    stub: session_pb2_grpc.SessionServiceStub, username: str, password: str, address: str
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _login(stub, username, password, address)
    return err.value


def _retry_after_ms(err: grpc.aio.AioRpcError) -> int:
    return int(dict(err.trailing_metadata() or ())["retry-after-ms"])


async def test_an_attacker_backs_off_exponentially_while_the_owner_logs_in_from_elsewhere(
    session_channel: grpc.aio.Channel,
) -> None:
    stub = session_pb2_grpc.SessionServiceStub(session_channel)
    username = f"u{uuid.uuid4().hex[:12]}"
    await stub.Register(pb.RegisterRequest(username=username, password=PASSWORD, device_name="laptop"))

    for _ in range(3):  # the free failures
        err = await _refused(stub, username, "guess", ATTACKER)
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    waits = []
    for _ in range(4):
        err = await _refused(stub, username, "guess", ATTACKER)
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        waits.append(_retry_after_ms(err))
        # Meanwhile the owner, from another address, is let in with the right password at once.
        assert (await _login(stub, username, PASSWORD, OWNER)).user_id
        await asyncio.sleep(waits[-1] / 1000 + 0.05)  # the attacker waits as told, then guesses again
        assert (await _refused(stub, username, "guess", ATTACKER)).code() == grpc.StatusCode.UNAUTHENTICATED
    assert all(later > 1.7 * earlier for earlier, later in zip(waits, waits[1:], strict=False)), waits

    # Even the right password waits, from the attacker's address: it learns nothing there.
    err = await _refused(stub, username, PASSWORD, ATTACKER)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_an_unknown_username_is_throttled_exactly_like_an_existing_one(
    session_channel: grpc.aio.Channel,
) -> None:
    stub = session_pb2_grpc.SessionServiceStub(session_channel)
    existing = f"u{uuid.uuid4().hex[:12]}"
    await stub.Register(pb.RegisterRequest(username=existing, password=PASSWORD, device_name="laptop"))
    answers: dict[str, list[tuple[grpc.StatusCode, str]]] = {}
    for username in (existing, f"u{uuid.uuid4().hex[:12]}"):
        answers[username] = []
        for _ in range(4):
            err = await _refused(stub, username, "guess", ATTACKER)
            answers[username].append((err.code(), err.details() or ""))
    first, second = answers.values()
    assert first == second
    assert [code for code, _ in first] == [grpc.StatusCode.UNAUTHENTICATED] * 3 + [grpc.StatusCode.RESOURCE_EXHAUSTED]


async def test_the_address_header_counts_only_from_a_trusted_proxy(
    cql: CqlSettings, nats_server: Nats, token_keys: KeyPair
) -> None:
    settings = SessionSettings(
        port=0, cql=cql, nats=NatsSettings(url=nats_server.url), signing_key_file=token_keys.private,
        token_public_key_file=token_keys.public, argon2_time_cost=1, argon2_memory_kib=8192, shutdown_drain_s=0,
        login_free_failures=3, trusted_proxies=[],  # nobody's header is believed: the peer address counts
    )  # fmt: skip
    app = await build(settings)
    async with app, grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        username = f"u{uuid.uuid4().hex[:12]}"
        await stub.Register(pb.RegisterRequest(username=username, password=PASSWORD, device_name="laptop"))
        for i in range(3):  # a client naming a fresh address each time gets nothing for it
            await _refused(stub, username, "guess", f"192.0.2.{i}")
        err = await _refused(stub, username, "guess", "192.0.2.99")
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
