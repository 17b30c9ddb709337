"""Envoy, run for real in front of a tiny grpc.aio server, spoken to as a browser would."""

from __future__ import annotations

import asyncio
import http.client
import json
import struct
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gateway.envoy import Envoy
from gateway.routes import RouteSpec
from gateway.settings import RateLimit
from tests.e2e.grpcweb import frame, parse_frames


class TinyUpstream(Protocol):
    """What conftest's ``upstream`` fixture gives (a name imported from conftest would not type-check)."""

    @property
    def port(self) -> int: ...

    @property
    def health(self) -> health_aio.HealthServicer: ...


# The upstream of conftest.py serves this package's health, and is the catalog too.
SESSION_SERVICE = "chatmesh.session.v1.SessionService"
SESSION_PACKAGE = "chatmesh.session.v1"
UPLOAD = f"/{SESSION_SERVICE}/Upload"
GatewayFactory = Callable[..., AbstractAsyncContextManager[Envoy]]

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
HEALTH_WATCH = "/grpc.health.v1.Health/Watch"
ALLOWED_ORIGIN = "http://localhost:5173"
OK, INVALID_ARGUMENT, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, UNIMPLEMENTED = 0, 3, 4, 8, 12


@dataclass
class GrpcWebReply:
    """A gRPC-web answer taken apart: HTTP status and headers, data frames, trailer frame."""

    http_status: int
    headers: dict[str, str]
    messages: list[bytes] = field(default_factory=list)
    trailers: dict[str, str] = field(default_factory=dict)

    @property
    def grpc_status(self) -> int | None:
        """From the trailer frame, or from the headers of a trailers-only answer."""
        value = self.trailers.get("grpc-status", self.headers.get("grpc-status"))
        return None if value is None else int(value)


def grpc_web_post(port: int, path: str, body: bytes, headers: dict[str, str] | None = None) -> GrpcWebReply:
    """POST a gRPC-web request over plain HTTP/1.1, as a browser's fetch() would."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(
            "POST",
            path,
            body=body,
            headers={
                "content-type": "application/grpc-web+proto",
                "x-grpc-web": "1",
                "origin": ALLOWED_ORIGIN,
                **(headers or {}),
            },
        )
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    messages, trailers = parse_frames(data)
    return GrpcWebReply(response.status, {k.lower(): v for k, v in response.getheaders()}, messages, trailers)


def check_request(service: str = SESSION_SERVICE) -> bytes:
    return frame(health_pb2.HealthCheckRequest(service=service).SerializeToString())


async def post(port: int, path: str, body: bytes, headers: dict[str, str] | None = None) -> GrpcWebReply:
    # The upstream server runs on this event loop: blocking HTTP must stay off it.
    return await asyncio.to_thread(grpc_web_post, port, path, body, headers)


def preflight(port: int, origin: str) -> dict[str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(
            "OPTIONS",
            HEALTH_CHECK,
            headers={
                "origin": origin,
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type,x-grpc-web,authorization",
            },
        )
        response = conn.getresponse()
        response.read()
        return {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


@pytest.mark.asyncio
async def test_grpc_web_call_over_http11_reaches_the_service_and_reads_serving(gateway: GatewayFactory) -> None:
    async with gateway() as envoy:
        reply = await post(envoy.settings.port, HEALTH_CHECK, check_request())

    assert reply.http_status == 200
    assert reply.headers["content-type"].startswith("application/grpc-web")
    assert reply.trailers["grpc-status"] == "0"
    assert len(reply.messages) == 1
    answer = health_pb2.HealthCheckResponse.FromString(reply.messages[0])
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    assert reply.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "grpc-status" in reply.headers["access-control-expose-headers"]


class GrpcWebStream:
    """A server-streaming gRPC-web call over HTTP/1.1, read one message at a time."""

    def __init__(self, port: int, path: str, body: bytes) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"}
        self.conn.request("POST", path, body=body, headers=headers)
        self.response = self.conn.getresponse()

    def read_message(self) -> bytes:
        flag, length = struct.unpack(">BI", self.response.read(5))
        assert flag == 0, "expected a data frame"
        return self.response.read(length)

    def close(self) -> None:
        self.conn.close()


@pytest.mark.asyncio
async def test_server_stream_outlives_the_unary_timeout_and_sees_later_updates(
    gateway: GatewayFactory, upstream: TinyUpstream
) -> None:
    async with gateway(unary_timeout_s=1.0) as envoy:
        stream = await asyncio.to_thread(GrpcWebStream, envoy.settings.port, HEALTH_WATCH, check_request())
        try:
            first = await asyncio.to_thread(stream.read_message)
            await asyncio.sleep(1.5)
            await upstream.health.set(SESSION_SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
            second = await asyncio.to_thread(stream.read_message)
        finally:
            stream.close()

    assert stream.response.status == 200
    assert health_pb2.HealthCheckResponse.FromString(first).status == health_pb2.HealthCheckResponse.SERVING
    assert health_pb2.HealthCheckResponse.FromString(second).status == health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.mark.asyncio
async def test_preflight_is_allowed_for_a_listed_origin_only(gateway: GatewayFactory) -> None:
    async with gateway() as envoy:
        allowed = await asyncio.to_thread(preflight, envoy.settings.port, ALLOWED_ORIGIN)
        foreign = await asyncio.to_thread(preflight, envoy.settings.port, "http://evil.example")

    assert allowed["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "x-grpc-web" in allowed["access-control-allow-headers"]
    assert "authorization" in allowed["access-control-allow-headers"]
    assert "POST" in allowed["access-control-allow-methods"]
    # Envoy answers a foreign preflight itself (never forwarded) without allow-origin, the
    # header a browser needs before it sends anything.
    assert "access-control-allow-origin" not in foreign


@pytest.mark.asyncio
async def test_malformed_body_fails_and_the_next_good_call_still_works(gateway: GatewayFactory) -> None:
    async with gateway() as envoy:
        port = envoy.settings.port
        garbage = await post(port, HEALTH_CHECK, frame(b"\xff\xff\xff\xff"))
        # The frame header promises 100 bytes and three follow: grpc.aio would wait for the rest
        # even after the stream ends; the gateway's frame check answers at once instead.
        truncated = await post(port, HEALTH_CHECK, b"\x00\x00\x00\x00\x64abc")
        good = await post(port, HEALTH_CHECK, check_request())

    assert garbage.grpc_status not in (None, OK)
    assert truncated.grpc_status == INVALID_ARGUMENT
    assert truncated.headers["grpc-message"] == "request: truncated message"
    assert good.grpc_status == OK


@pytest.mark.asyncio
async def test_calls_that_never_send_their_message_end_at_the_request_timeout_and_others_live_on(
    gateway: GatewayFactory,
) -> None:
    async with gateway(request_timeout_s=1.0, unary_timeout_s=3600) as envoy:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{envoy.settings.port}") as channel:
            # Stream calls on a unary and a server-streaming path: headers go out, the message never does.
            silent = [channel.stream_stream(path)() for path in (HEALTH_CHECK, HEALTH_WATCH)]
            codes = await asyncio.wait_for(asyncio.gather(*(c.code() for c in silent)), timeout=60)
            details = await silent[0].details()
            # A stream whose request came in time outlives the request timeout.
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=SESSION_SERVICE))
            first = await watch.read()
            # So does a client stream whose service has begun answering (reflection is bidirectional).
            reflect = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo()
            await reflect.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            await reflect.read()
            await asyncio.sleep(2.5)
            await reflect.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            listed_later = await reflect.read()
            await reflect.done_writing()
            watch.cancel()

    assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED] * 2
    assert details == "request not received in time"
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    assert isinstance(listed_later, reflection_pb2.ServerReflectionResponse)


@pytest.mark.asyncio
async def test_body_over_max_request_bytes_is_refused_as_resource_exhausted(gateway: GatewayFactory) -> None:
    async with gateway(max_request_bytes=64 * 1024) as envoy:
        port = envoy.settings.port
        big = check_request("x" * (100 * 1024))
        refused = await post(port, HEALTH_CHECK, big)
        small = await post(port, HEALTH_CHECK, check_request())
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            check = channel.unary_unary(HEALTH_CHECK)
            with pytest.raises(grpc.aio.AioRpcError) as native:
                await check(big[5:], timeout=5)

    assert refused.grpc_status == RESOURCE_EXHAUSTED
    assert "larger than 65536 bytes" in refused.headers["grpc-message"]
    assert small.grpc_status == OK
    assert native.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.asyncio
async def test_exhausted_rate_limit_answers_resource_exhausted(gateway: GatewayFactory) -> None:
    tiny = RateLimit(max_tokens=2, tokens_per_fill=1, fill_interval_s=3600)
    async with gateway(rate_limit_overrides={SESSION_PACKAGE: tiny}) as envoy:
        port = envoy.settings.port
        path = f"/{SESSION_SERVICE}/Ping"
        web = [await post(port, path, frame(b"")) for _ in range(3)]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            ping = channel.unary_unary(path)
            with pytest.raises(grpc.aio.AioRpcError) as native:
                await ping(b"", timeout=5)
        # Other routes keep their own bucket.
        health = await post(port, HEALTH_CHECK, check_request())

    # The upstream has no SessionService: calls that get through read UNIMPLEMENTED.
    assert [r.grpc_status for r in web] == [UNIMPLEMENTED, UNIMPLEMENTED, RESOURCE_EXHAUSTED]
    assert web[2].headers["retry-after-ms"] == "3600000"  # the bucket's next fill
    assert native.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert dict(native.value.trailing_metadata() or ())["retry-after-ms"] == "3600000"
    assert health.grpc_status == OK


@pytest.mark.asyncio
async def test_native_grpc_and_reflection_pass_through_the_gateway(gateway: GatewayFactory) -> None:
    async with gateway() as envoy, grpc.aio.insecure_channel(f"127.0.0.1:{envoy.settings.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest(service=SESSION_SERVICE), timeout=5)
        # Bidirectional: this hangs if the route buffered the request until the client half-closes.
        call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(timeout=5)
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        listed = await call.read()
        await call.done_writing()
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await channel.unary_unary("/chatmesh.nowhere.v1.NowhereService/Call")(b"", timeout=5)

    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    assert isinstance(listed, reflection_pb2.ServerReflectionResponse)
    names = {s.name for s in listed.list_services_response.service}
    assert "grpc.health.v1.Health" in names
    assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def read_log_lines(log: Path, count: int) -> list[dict[str, object]]:
    """The first ``count`` JSON lines of ``log``; Envoy flushes it about once a second."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = log.read_text().splitlines() if log.exists() else []
        if len(lines) >= count:
            return [json.loads(line) for line in lines]
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{log} has fewer than {count} lines")


@pytest.mark.asyncio
async def test_access_log_has_each_calls_real_grpc_status_and_never_the_token(
    gateway: GatewayFactory, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    tiny = RateLimit(max_tokens=1, tokens_per_fill=1, fill_interval_s=3600)
    async with gateway(access_log_path=log, rate_limit_overrides={SESSION_PACKAGE: tiny}) as envoy:
        port = envoy.settings.port
        secret = {"authorization": "Bearer sekrit-token"}
        await post(port, HEALTH_CHECK, check_request(), secret)
        for _ in range(2):
            await post(port, f"/{SESSION_SERVICE}/Ping", frame(b""), secret)
        lines = await read_log_lines(log, 3)

    assert "sekrit" not in log.read_text()
    by_status = {(line["path"], line["grpc_status"]): line for line in lines}
    # A gRPC-web call's status travels in the body; the log still has it right.
    served = by_status[(HEALTH_CHECK, OK)]
    assert served["answered_by"] == "service"
    assert served["method"] == "POST"
    assert {"duration_ms", "request_bytes", "response_bytes", "request_id"} <= served.keys()
    assert by_status[(f"/{SESSION_SERVICE}/Ping", UNIMPLEMENTED)]["answered_by"] == "service"
    limited = by_status[(f"/{SESSION_SERVICE}/Ping", RESOURCE_EXHAUSTED)]
    assert limited["answered_by"] == "gateway"
    assert limited["flags"] == "RL"
    assert len(lines) == 3


@pytest.mark.asyncio
async def test_envoy_admin_answers_on_loopback_only(gateway: GatewayFactory) -> None:
    async with gateway() as envoy:
        admin = envoy.settings.admin_port
        ready = await asyncio.to_thread(_admin_get, "127.0.0.1", admin)
        # Bound to 127.0.0.1 itself: another address of this very machine does not reach it.
        with pytest.raises(ConnectionRefusedError):
            await asyncio.to_thread(_admin_get, "127.0.0.2", admin)

    assert ready == 200


def _admin_get(host: str, port: int) -> int:
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("GET", "/ready")
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.mark.asyncio
async def test_a_client_stream_outlives_the_request_timeout_once_its_service_has_answered_headers(
    gateway: GatewayFactory,
) -> None:
    routes = [RouteSpec(package=SESSION_PACKAGE, cluster="session", client_streaming_methods=[UPLOAD])]
    async with gateway(routes, request_timeout_s=1.0) as envoy:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{envoy.settings.port}") as channel:
            results = {}
            for early in ("1", "0"):
                call = channel.stream_unary(UPLOAD)(metadata=(("x-early-headers", early),))
                try:
                    for _ in range(3):  # 3 s of slow upload, past the 1 s request timeout
                        await call.write(b"x" * 10)
                        await asyncio.sleep(1)
                    await call.done_writing()
                    results[early] = await call
                except (grpc.aio.AioRpcError, asyncio.InvalidStateError):  # writing to a call already ended
                    results[early] = await call.code()

    assert results["1"] == b"30"
    # Without early headers the gateway cannot tell the stream from one that never sends: cut.
    assert isinstance(results["0"], grpc.StatusCode) and results["0"] != grpc.StatusCode.OK
