"""Calls that send headers and never a message hold nothing for long, and starve nobody else.

Straight at the session service (the gateway's own limits are tested in test_edge.py): 3,000
calls open with headers only, half anonymous Logins, half ListDevices with the attacker's
own token. Meanwhile another user, from another client address (as the gateway reports it
in x-chatmesh-client-address), logs in and lists devices, and none of their calls fail.
Every silent call ends by itself: DEADLINE_EXCEEDED after the first-message timeout, or
RESOURCE_EXHAUSTED at once for those over the caller's share.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import grpc

from chatmesh.session.v1 import session_pb2 as spb
from chatmesh.session.v1 import session_pb2_grpc
from services.runtime.server import ServiceServer

SILENT_CALLS = 3000
CHANNELS = 10  # 300 calls a connection, under HTTP/2 max_concurrent_streams
PASSWORD = "correct horse battery"
LOGIN = "/chatmesh.session.v1.SessionService/Login"
LIST_DEVICES = "/chatmesh.session.v1.SessionService/ListDevices"


async def silent_call(channel: grpc.aio.Channel, method: str, metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
    """Open ``method``, send its headers and nothing else; the status it ends with."""
    call = channel.stream_unary(method, request_serializer=None, response_deserializer=None)(
        metadata=metadata, timeout=120
    )  # the write API: nothing is ever written
    return await call.code()


async def test_thousands_of_silent_calls_end_by_themselves_and_another_user_is_not_refused(
    session_service: ServiceServer,
) -> None:
    target = f"127.0.0.1:{session_service.port}"
    channels = [
        grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1), ("grpc.channel_id", n)])
        for n in range(CHANNELS + 1)
    ]
    victim_channel, attack_channels = channels[0], channels[1:]
    try:
        session = session_pb2_grpc.SessionServiceStub(victim_channel)
        attacker = await session.Register(
            spb.RegisterRequest(username=f"m{uuid.uuid4().hex[:12]}", password=PASSWORD, device_name="x")
        )
        victim_name = f"v{uuid.uuid4().hex[:12]}"
        await session.Register(spb.RegisterRequest(username=victim_name, password=PASSWORD, device_name="laptop"))
        attacker_auth = (("authorization", f"Bearer {attacker.tokens.access_token}"),)

        silent = [
            asyncio.create_task(
                silent_call(
                    attack_channels[n % CHANNELS], LOGIN if n % 2 else LIST_DEVICES, () if n % 2 else attacker_auth
                )
            )
            for n in range(SILENT_CALLS)
        ]
        await asyncio.sleep(1.0)  # all open, waiting for messages that never come

        victim_address = (("x-chatmesh-client-address", "198.51.100.7"),)
        failures: list[str] = []
        for attempt in range(10):
            try:
                login = await session.Login(
                    spb.LoginRequest(username=victim_name, password=PASSWORD, device_name=f"phone{attempt}"),
                    metadata=victim_address,
                    timeout=10,
                )
                auth = (("authorization", f"Bearer {login.tokens.access_token}"),)
                await session.ListDevices(spb.ListDevicesRequest(), metadata=auth, timeout=10)
            except grpc.aio.AioRpcError as exc:
                failures.append(exc.code().name)
            await asyncio.sleep(0.2)

        async with asyncio.timeout(60):
            endings = Counter(await asyncio.gather(*silent))
    finally:
        for channel in channels:
            await channel.close()

    assert failures == []
    # Every silent call ended by itself, none with a false OK: timed out waiting for its message,
    # or refused at once as over its caller's share (the attacker's user, or its client address).
    # None ends CANCELLED: with grpc core's default backlog (1,000 calls not yet taken up by the
    # server) a burst of thousands was dropped at random, the victim's calls with it; the
    # runtime sets that backlog (max_pending_calls) above such a burst.
    ended = {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert set(endings) <= ended, endings
    assert sum(endings.values()) == SILENT_CALLS
    assert endings[grpc.StatusCode.RESOURCE_EXHAUSTED] > 0


async def test_a_user_holding_too_many_streams_is_refused_and_nobody_else_is(
    session_service: ServiceServer,
    history_service: ServiceServer,  # declares the CHAT stream that Connect reads
) -> None:
    limit = session_service.settings.max_streams_per_caller
    async with grpc.aio.insecure_channel(f"127.0.0.1:{session_service.port}") as channel:
        session = session_pb2_grpc.SessionServiceStub(channel)
        greedy, other = [
            await session.Register(
                spb.RegisterRequest(username=f"s{uuid.uuid4().hex[:12]}", password=PASSWORD, device_name="x")
            )
            for _ in range(2)
        ]
        greedy_auth = (("authorization", f"Bearer {greedy.tokens.access_token}"),)
        other_auth = (("authorization", f"Bearer {other.tokens.access_token}"),)
        held = [session.Connect(spb.ConnectRequest(), metadata=greedy_auth) for _ in range(limit)]
        try:
            for call in held:
                await asyncio.wait_for(call.read(), 10)  # open and live
            one_more = session.Connect(spb.ConnectRequest(), metadata=greedy_auth)
            assert await asyncio.wait_for(one_more.code(), 10) == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "retry-after-ms" in dict(await one_more.trailing_metadata() or ())
            theirs = session.Connect(spb.ConnectRequest(), metadata=other_auth)
            first = await asyncio.wait_for(theirs.read(), 10)
            assert first is not grpc.aio.EOF
            theirs.cancel()
            # A stream closed gives its place back.
            held.pop().cancel()
            await asyncio.sleep(0.5)
            again = session.Connect(spb.ConnectRequest(), metadata=greedy_auth)
            assert await asyncio.wait_for(again.read(), 10) is not grpc.aio.EOF
            held.append(again)
        finally:
            for call in held:
                call.cancel()
