"""The gateway's edge through a real Envoy in front of the real services: tokens, per-client
rate limits, calls that never send their message, and malformed gRPC-web frames."""

from __future__ import annotations

import asyncio
import http.client
import json
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chatmesh.history.v1 import history_pb2
from chatmesh.session.v1 import session_pb2 as pb
from chatmesh.session.v1 import session_pb2_grpc
from gateway.settings import ClientBucket, ClientRateLimits
from services.runtime.server import ServiceServer
from services.runtime.tokens import Principal, TokenSigner, load_private_key
from tests.conftest import KeyPair
from tests.e2e.conftest import Gateway, gateway_for
from tests.e2e.grpcweb import GrpcWebReply, call, frame, parse_frames

SESSION = "/chatmesh.session.v1.SessionService"
APPEND_ASSISTANT = "/chatmesh.history.v1.HistoryService/AppendAssistantMessage"
INVALID_ARGUMENT, DEADLINE_EXCEEDED, PERMISSION_DENIED, RESOURCE_EXHAUSTED, UNAUTHENTICATED = 3, 4, 7, 8, 16


def _username() -> str:
    return f"e{uuid.uuid4().hex[:12]}"


def _post_from(source: str, port: int, path: str, body: bytes, token: str | None = None) -> GrpcWebReply:
    """A gRPC-web POST over a connection from ``source`` (any 127.0.0.x reaches Envoy's 127.0.0.1)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    headers = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        response_headers = {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()
    messages, trailers = parse_frames(data)
    status = trailers.get("grpc-status", response_headers.get("grpc-status", "-1"))
    message = trailers.get("grpc-message", response_headers.get("grpc-message", ""))
    return GrpcWebReply(response.status, int(status), urllib.parse.unquote(message), messages, response_headers)


async def post_from(source: str, gw: Gateway, path: str, body: bytes, token: str | None = None) -> GrpcWebReply:
    return await asyncio.to_thread(_post_from, source, gw.port, path, body, token)


async def _register(gw: Gateway, username: str | None = None) -> pb.RegisterResponse:
    request = pb.RegisterRequest(username=username or _username(), password="correct horse", device_name="laptop")
    return (await call(gw.url, f"{SESSION}/Register", request)).parse(pb.RegisterResponse)


def _auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def _answered_by(home: Path, path: str) -> list[str]:
    """Who answered each logged call to ``path``: "gateway" (Envoy itself) or "service"."""
    log = home / "access.log"
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
    return [entry["answered_by"] for entry in lines if entry["path"] == path]


async def test_calls_without_a_valid_token_are_refused_at_the_edge_and_never_reach_the_service(
    gateway: Gateway, token_keys: KeyPair, tmp_path: Path
) -> None:
    signer = TokenSigner(load_private_key(token_keys.private), "chatmesh", 60)
    principal = Principal(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()))
    valid = signer.sign(principal).token
    cases = {
        None: "missing access token",
        signer.sign(principal, now=time.time() - 3600).token: "access token expired: refresh it",
        valid[:-4] + ("AAAA" if not valid.endswith("AAAA") else "BBBB"): "access token invalid",
        "not-a-jwt": "access token invalid",
    }
    for token, message in cases.items():
        reply = await call(gateway.url, f"{SESSION}/ListDevices", pb.ListDevicesRequest(), token=token)
        assert (reply.grpc_status, reply.messages) == (UNAUTHENTICATED, []), (token, reply)
        assert reply.grpc_message.startswith(message), reply
    async with grpc.aio.insecure_channel(gateway.target) as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListDevices(pb.ListDevicesRequest(), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert refused.value.details().startswith("missing access token")
    await asyncio.sleep(1.5)  # the access log is flushed every second
    assert _answered_by(tmp_path, f"{SESSION}/ListDevices") == ["gateway"] * 5


async def test_public_calls_health_and_reflection_need_no_token_and_a_valid_token_passes(gateway: Gateway) -> None:
    registered = await _register(gateway)
    async with grpc.aio.insecure_channel(gateway.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        stub = session_pb2_grpc.SessionServiceStub(channel)
        devices = await stub.ListDevices(
            pb.ListDevicesRequest(), metadata=_auth(registered.tokens.access_token), timeout=10
        )
        assert [d.name for d in devices.devices] == ["laptop"]


async def test_an_internal_method_is_permission_denied_by_the_gateway_whatever_the_token(
    chat_gateway: Gateway, tmp_path: Path
) -> None:
    registered = await _register(chat_gateway)
    request = history_pb2.AppendAssistantMessageRequest()
    for token in (registered.tokens.access_token, None):
        reply = await call(chat_gateway.url, APPEND_ASSISTANT, request, token=token)
        assert reply.grpc_status == PERMISSION_DENIED, reply
        assert "internal" in reply.grpc_message
    async with grpc.aio.insecure_channel(chat_gateway.target) as channel:
        append = channel.unary_unary(APPEND_ASSISTANT, request_serializer=lambda m: m.SerializeToString())
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await append(request, metadata=_auth(registered.tokens.access_token), timeout=10)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    await asyncio.sleep(1.5)
    assert set(_answered_by(tmp_path, APPEND_ASSISTANT)) == {"gateway"}


@pytest.fixture
async def small_buckets(session_service: ServiceServer, token_keys: KeyPair, tmp_path: Path) -> AsyncIterator[Gateway]:
    """Edge auth on, and client buckets small enough to empty in a test: 20 calls per user, 5 per address."""
    limits = ClientRateLimits(user=ClientBucket(burst=20, per_second=10), address=ClientBucket(burst=5, per_second=1))
    async with gateway_for({"session": session_service}, tmp_path, token_keys, client_rate_limits=limits) as gw:
        yield gw


async def test_a_flooding_user_gets_resource_exhausted_with_a_retry_hint_and_another_user_sees_no_error(
    small_buckets: Gateway,
) -> None:
    flooder, other = await _register(small_buckets), await _register(small_buckets)
    async with grpc.aio.insecure_channel(small_buckets.target) as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        refused: list[grpc.aio.AioRpcError] = []
        other_errors: list[grpc.StatusCode] = []

        async def flood() -> None:
            for _ in range(10):
                results = await asyncio.gather(
                    *(
                        stub.ListDevices(
                            pb.ListDevicesRequest(), metadata=_auth(flooder.tokens.access_token), timeout=10
                        )
                        for _ in range(20)
                    ),
                    return_exceptions=True,
                )
                refused.extend(r for r in results if isinstance(r, grpc.aio.AioRpcError))

        async def use() -> None:
            for _ in range(10):
                try:
                    await stub.ListDevices(
                        pb.ListDevicesRequest(), metadata=_auth(other.tokens.access_token), timeout=10
                    )
                except grpc.aio.AioRpcError as exc:
                    other_errors.append(exc.code())
                await asyncio.sleep(0.2)

        await asyncio.gather(flood(), use())
    assert refused, "the flooder was never limited"
    assert {e.code() for e in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    hints = [dict(e.trailing_metadata() or ()).get("retry-after-ms") for e in refused]
    assert all(h is not None and int(h) > 0 for h in hints), hints[:3]
    assert other_errors == []


async def test_anonymous_login_floods_from_one_address_leave_another_address_alone(small_buckets: Gateway) -> None:
    username = _username()
    await call(
        small_buckets.url,
        f"{SESSION}/Register",
        pb.RegisterRequest(username=username, password="right password", device_name="a"),
    )
    # A sprayer trying other usernames (the victim's own lockout is the session service's business).
    guesses = [pb.LoginRequest(username=_username(), password="guess", device_name="a") for _ in range(12)]
    flood = [
        await post_from("127.0.0.2", small_buckets, f"{SESSION}/Login", frame(g.SerializeToString())) for g in guesses
    ]
    limited = [r for r in flood if r.grpc_status == RESOURCE_EXHAUSTED]
    assert limited, [r.grpc_status for r in flood]
    assert all(int(r.headers["retry-after-ms"]) > 0 for r in limited)
    right = frame(pb.LoginRequest(username=username, password="right password", device_name="b").SerializeToString())
    login = await post_from("127.0.0.3", small_buckets, f"{SESSION}/Login", right)
    assert login.grpc_status == 0, login
    assert login.parse(pb.LoginResponse).tokens.access_token


async def test_thousands_of_calls_that_never_send_their_message_leave_other_users_alone_and_end_within_a_minute(
    session_service: ServiceServer, token_keys: KeyPair, tmp_path: Path
) -> None:
    # Buckets too large to help: only the timeouts and stream limits stand in the way.
    roomy = ClientBucket(burst=1_000_000, per_second=1_000_000)
    limits = ClientRateLimits(user=roomy, address=roomy)
    async with gateway_for({"session": session_service}, tmp_path, token_keys, client_rate_limits=limits) as gw:
        victim_name = _username()
        attacker, victim = await _register(gw), await _register(gw, victim_name)
        channels = [
            # A channel of its own each (no shared subchannel): 250 streams, under Envoy's 256 per connection.
            grpc.aio.insecure_channel(gw.target, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(12)
        ]
        try:
            calls = []
            for index in range(3000):
                channel = channels[index % len(channels)]
                # Anonymous Logins, and ListDevices and Connect streams with a valid token.
                path = ("Login", "ListDevices", "Connect")[index % 3]
                metadata = () if path == "Login" else _auth(attacker.tokens.access_token)
                calls.append(channel.stream_stream(f"{SESSION}/{path}")(metadata=metadata))
            await asyncio.sleep(1)  # they are all open, headers sent, no message

            async with grpc.aio.insecure_channel(gw.target) as channel:
                stub = session_pb2_grpc.SessionServiceStub(channel)
                login = await stub.Login(
                    pb.LoginRequest(username=victim_name, password="correct horse", device_name="phone"), timeout=20
                )
                assert login.user_id == victim.user_id
                devices = await stub.ListDevices(
                    pb.ListDevicesRequest(), metadata=_auth(victim.tokens.access_token), timeout=20
                )
                assert sorted(d.name for d in devices.devices) == ["laptop", "phone"]
            codes = await asyncio.wait_for(asyncio.gather(*(c.code() for c in calls)), timeout=60)
        finally:
            for channel in channels:
                await channel.close()
    assert set(codes) <= {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}, set(codes)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty body"),
        (b"\x00\x00\x00", "truncated message frame"),
        (b"\x00\x00\x00\x00\x10\xff\xff", "truncated message"),
        (frame(pb.ListDevicesRequest().SerializeToString(), flag=1), "compressed messages are not accepted"),
        (frame(b"") + frame(b""), "expected exactly one message"),
    ],
    ids=["empty", "short-frame-header", "truncated", "compressed", "two-messages"],
)
async def test_a_malformed_grpc_web_body_is_invalid_argument_at_once(
    gateway: Gateway, body: bytes, message: str
) -> None:
    registered = await _register(gateway)
    for path, token in ((f"{SESSION}/Login", None), (f"{SESSION}/ListDevices", registered.tokens.access_token)):
        reply = await call(gateway.url, path, body, token=token)
        assert (reply.grpc_status, reply.messages) == (INVALID_ARGUMENT, []), reply
        assert message in reply.grpc_message
    # The gateway and the service still serve.
    assert (await _register(gateway)).tokens.access_token


async def test_a_native_grpc_request_compressed_with_an_agreed_encoding_is_served(gateway: Gateway) -> None:
    # gRPC's own compression (grpc-encoding: gzip) is not a malformed frame: it reaches the service.
    async with grpc.aio.insecure_channel(gateway.target) as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        request = pb.LoginRequest(username=_username(), password="x" * 200, device_name="a")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Login(request, compression=grpc.Compression.Gzip, timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED  # unknown user, as uncompressed


async def test_the_access_log_says_whose_call_was_limited_and_never_the_token(
    small_buckets: Gateway, tmp_path: Path
) -> None:
    registered = await _register(small_buckets)
    token = registered.tokens.access_token
    replies = [
        await call(small_buckets.url, f"{SESSION}/ListDevices", pb.ListDevicesRequest(), token=token) for _ in range(25)
    ]
    assert RESOURCE_EXHAUSTED in {r.grpc_status for r in replies}
    await asyncio.sleep(1.5)  # the access log is flushed every second

    text = (tmp_path / "access.log").read_text()
    assert token not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    limited = [e for e in lines if e["path"] == f"{SESSION}/ListDevices" and e["answered_by"] == "gateway"]
    assert limited and {e["user"] for e in limited} == {registered.user_id}
