"""Envoy verifying tokens at the edge, per route, in front of a tiny upstream.

The upstream serves health and reflection only: a chatmesh.session.v1 call that gets past the
gateway reads UNIMPLEMENTED (the service saw it); one the gateway refused reads its status.
"""

from __future__ import annotations

import asyncio
import http.client
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import grpc
import pytest

from gateway.envoy import Envoy
from gateway.routes import RouteSpec
from gateway.settings import ClientBucket, ClientRateLimits, EdgeAuth
from services.runtime.tokens import (
    Principal,
    ServiceTokenSigner,
    TokenSigner,
    generate_key_pair,
    load_private_key,
)
from tests.e2e.grpcweb import frame
from tests.gateway.test_envoy_grpc_web import HEALTH_CHECK, check_request, post

GatewayFactory = Callable[..., AbstractAsyncContextManager[Envoy]]
SERVICE = "/chatmesh.session.v1.SessionService"
PUBLIC, OPTIONAL, USER, INTERNAL = (f"{SERVICE}/{m}" for m in ("Login", "GetForm", "ListDevices", "Append"))
ROUTES = [
    RouteSpec(
        package="chatmesh.session.v1",
        cluster="session",
        public_methods=[PUBLIC],
        optional_auth_methods=[OPTIONAL],
        internal_methods=[INTERNAL],
    )
]
OK, PERMISSION_DENIED, RESOURCE_EXHAUSTED, UNIMPLEMENTED, UNAUTHENTICATED = 0, 7, 8, 12, 16


class Keys:
    """Access and service key pairs, and tokens signed with them."""

    def __init__(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.access = (home / "access.pem", home / "access.pub.pem")
        self.service = (home / "service.pem", home / "service.pub.pem")
        generate_key_pair(*self.access)
        generate_key_pair(*self.service)
        self.auth = EdgeAuth(access_token_public_key_file=self.access[1], service_token_public_key_file=self.service[1])

    def user_token(self, *, now: float | None = None) -> str:
        signer = TokenSigner(load_private_key(self.access[0]), "chatmesh", 300)
        return signer.sign(Principal(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())), now=now).token

    def service_token(self) -> str:
        return ServiceTokenSigner(load_private_key(self.service[0]), "chatmesh", "ingest-worker").token()

    def foreign_token(self, home: Path) -> str:
        """A well-formed token signed by a key the gateway does not know."""
        generate_key_pair(home / "other.pem", home / "other.pub.pem")
        signer = TokenSigner(load_private_key(home / "other.pem"), "chatmesh", 300)
        return signer.sign(Principal("u", "d", "s")).token


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path / "keys")


async def _status(port: int, path: str, token: str | None) -> int:
    headers = {} if token is None else {"authorization": f"Bearer {token}"}
    reply = await post(port, path, frame(b""), headers)
    assert reply.grpc_status is not None, reply
    return reply.grpc_status


@pytest.mark.asyncio
async def test_each_route_asks_for_the_token_its_access_needs(
    gateway: GatewayFactory, keys: Keys, tmp_path: Path
) -> None:
    valid, service = keys.user_token(), keys.service_token()
    expired, foreign = keys.user_token(now=time.time() - 3600), keys.foreign_token(tmp_path)
    async with gateway(ROUTES, edge_auth=keys.auth) as envoy:
        port = envoy.settings.port
        seen = {
            (path, name): await _status(port, path, token)
            for path in (PUBLIC, OPTIONAL, USER, INTERNAL)
            for name, token in (
                ("none", None),
                ("valid", valid),
                ("service", service),
                ("expired", expired),
                ("foreign", foreign),
            )
        }
        health = await post(port, HEALTH_CHECK, check_request())

    # Public: nobody looks at the token (the service does, if it cares).
    assert {seen[(PUBLIC, n)] for n in ("none", "valid", "expired", "foreign")} == {UNIMPLEMENTED}
    # Optional: none is fine, a token sent must be valid.
    assert [seen[(OPTIONAL, n)] for n in ("none", "valid", "service", "expired", "foreign")] == [
        UNIMPLEMENTED,
        UNIMPLEMENTED,
        UNIMPLEMENTED,
        UNAUTHENTICATED,
        UNAUTHENTICATED,
    ]
    # Authenticated: a user's or a service's valid token, nothing else.
    assert [seen[(USER, n)] for n in ("none", "valid", "service", "expired", "foreign")] == [
        UNAUTHENTICATED,
        UNIMPLEMENTED,
        UNIMPLEMENTED,
        UNAUTHENTICATED,
        UNAUTHENTICATED,
    ]
    # Internal: never forwarded, whoever asks.
    assert {seen[(INTERNAL, n)] for n in ("none", "valid", "service")} == {PERMISSION_DENIED}
    assert health.grpc_status == OK


@pytest.mark.asyncio
async def test_refusals_say_why_to_native_grpc_clients_too(gateway: GatewayFactory, keys: Keys) -> None:
    expired = keys.user_token(now=time.time() - 3600)
    async with gateway(ROUTES, edge_auth=keys.auth) as envoy:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{envoy.settings.port}") as channel:
            errors = {}
            for name, path, token in (
                ("missing", USER, None),
                ("expired", USER, expired),
                ("garbage", USER, "a.b.c"),
                ("internal", INTERNAL, None),
            ):
                metadata = () if token is None else (("authorization", f"Bearer {token}"),)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await channel.unary_unary(path)(b"", metadata=metadata, timeout=5)
                errors[name] = (refused.value.code(), refused.value.details())

    assert errors["missing"] == (
        grpc.StatusCode.UNAUTHENTICATED,
        "missing access token: send `authorization: Bearer <token>`",
    )
    assert errors["expired"] == (grpc.StatusCode.UNAUTHENTICATED, "access token expired: refresh it")
    assert errors["garbage"] == (grpc.StatusCode.UNAUTHENTICATED, "access token invalid")
    assert errors["internal"][0] == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.asyncio
async def test_one_users_empty_bucket_leaves_another_users_alone(gateway: GatewayFactory, keys: Keys) -> None:
    limits = ClientRateLimits(user=ClientBucket(burst=3, per_second=1), address=ClientBucket(burst=2, per_second=1))
    first, second = keys.user_token(), keys.user_token()
    async with gateway(ROUTES, edge_auth=keys.auth, client_rate_limits=limits) as envoy:
        port = envoy.settings.port
        flood = [await post(port, USER, frame(b""), {"authorization": f"Bearer {first}"}) for _ in range(5)]
        other = [await _status(port, USER, second) for _ in range(3)]
        anonymous = [await _status(port, PUBLIC, None) for _ in range(3)]

    assert [r.grpc_status for r in flood] == [UNIMPLEMENTED] * 3 + [RESOURCE_EXHAUSTED] * 2
    assert all(r.headers["retry-after-ms"] == "1000" for r in flood[3:])
    assert "retry-after-ms" in flood[3].headers["access-control-expose-headers"]
    assert other == [UNIMPLEMENTED] * 3
    assert anonymous == [UNIMPLEMENTED, UNIMPLEMENTED, RESOURCE_EXHAUSTED]


def _public_call_from(port: int, source: str, forwarded_for: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        headers = {"content-type": "application/grpc-web+proto", "x-forwarded-for": forwarded_for}
        conn.request("POST", PUBLIC, body=frame(b""), headers=headers)
        response = conn.getresponse()
        response.read()
        return int(response.getheader("grpc-status") or -1)
    finally:
        conn.close()


@pytest.mark.asyncio
async def test_only_a_trusted_proxy_says_which_client_a_call_is_from(gateway: GatewayFactory) -> None:
    limits = ClientRateLimits(address=ClientBucket(burst=2, per_second=1))
    async with gateway(ROUTES, trusted_proxies=["127.0.0.2/32"], client_rate_limits=limits) as envoy:

        async def calls(source: str, forwarded_for: str, count: int) -> list[int]:
            port = envoy.settings.port
            return [await asyncio.to_thread(_public_call_from, port, source, forwarded_for) for _ in range(count)]

        proxied = await calls("127.0.0.2", "203.0.113.7", 3)
        proxied_other_client = await calls("127.0.0.2", "203.0.113.8", 1)
        direct = await calls("127.0.0.3", "203.0.113.9", 3)
        direct_claiming_another = await calls("127.0.0.3", "203.0.113.10", 1)

    assert proxied == [UNIMPLEMENTED, UNIMPLEMENTED, RESOURCE_EXHAUSTED]
    assert proxied_other_client == [UNIMPLEMENTED]
    assert direct == [UNIMPLEMENTED, UNIMPLEMENTED, RESOURCE_EXHAUSTED]
    # An untrusted client's x-forwarded-for changes nothing: it is still 127.0.0.3.
    assert direct_claiming_another == [RESOURCE_EXHAUSTED]
