"""Heartbeat, GetPresence and WatchPresence over gRPC, on real NATS (KV, subjects) and Cassandra."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import grpc
import pytest
from nats.aio.client import Client

from chatmesh.events.v1 import events_pb2
from chatmesh.presence.v1 import presence_pb2 as pb
from services.presence.server import PresenceApp
from tests.services.presence.conftest import Befriend, Device, Replicas
from tests.services.presence.watching import Watcher

MakeDevice = Callable[..., Device]
ONLINE, AWAY, OFFLINE, UNSPECIFIED = (
    pb.PRESENCE_STATE_ONLINE,
    pb.PRESENCE_STATE_AWAY,
    pb.PRESENCE_STATE_OFFLINE,
    pb.PRESENCE_STATE_UNSPECIFIED,
)


def _seconds(presence: pb.UserPresence) -> float:
    return presence.last_seen_at.ToMilliseconds() / 1000


async def _eventually(check: Callable[[], object], timeout_s: float = 5.0) -> None:
    """Poll an async condition until it holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def _state_of(device: Device, user_id: str) -> tuple[int, int]:
    (presence,) = await device.presence(user_id)
    return presence.state, presence.device_count


async def _bus_heartbeat(bus: Client, user_id: str, device_id: str, *, connected: bool, active: bool = True) -> None:
    beat = events_pb2.DeviceHeartbeat(user_id=user_id, device_id=device_id, connected=connected, active=active)
    await bus.publish("presence.heartbeat", beat.SerializeToString())
    await bus.flush()


def _watch(device: Device, *user_ids: str) -> Watcher:
    return Watcher(device.stub.WatchPresence(pb.WatchPresenceRequest(user_ids=list(user_ids)), metadata=device.auth))


async def test_heartbeats_from_two_devices_fold_to_online_with_two_devices(make_device: MakeDevice) -> None:
    phone = make_device()
    laptop = make_device(phone.user_id)
    before = time.time()
    reply = await phone.heartbeat()
    await laptop.heartbeat()

    (presence,) = await phone.presence(phone.user_id)
    assert (presence.state, presence.device_count) == (ONLINE, 2)
    assert before - 0.01 <= _seconds(presence) <= time.time()
    assert reply.next_heartbeat_s == 30  # half the default 60 s TTL


async def test_a_user_whose_only_device_is_in_the_background_is_away(
    make_device: MakeDevice, befriend: Befriend
) -> None:
    phone, contact = make_device(), make_device()
    await befriend(contact, phone)
    await phone.heartbeat(active=False)
    assert await _state_of(contact, phone.user_id) == (AWAY, 1)


async def test_a_user_whose_heartbeats_stop_is_offline_after_the_ttl_with_last_seen(
    replicas: Replicas, make_device: MakeDevice
) -> None:
    app = await replicas.start(device_ttl_s=2, offline_retention_s=2)
    phone = make_device(app=app)
    sent_at = time.time()
    reply = await phone.heartbeat()
    assert reply.next_heartbeat_s == 1
    assert await _state_of(phone, phone.user_id) == (ONLINE, 1)

    await _eventually(lambda: _is_offline(phone), timeout_s=6)
    gone_after = time.time() - sent_at
    (presence,) = await phone.presence(phone.user_id)
    assert 2.0 <= gone_after < 4.0
    assert _seconds(presence) == pytest.approx(sent_at, abs=0.5)


async def _is_offline(device: Device) -> bool:
    return await _state_of(device, device.user_id) == (OFFLINE, 0)


async def test_a_device_heartbeat_on_the_bus_counts_like_the_rpc_and_leaving_drops_it_at_once(
    make_device: MakeDevice, bus: Client
) -> None:
    laptop = make_device()
    connected_phone = str(uuid.uuid4())
    await _bus_heartbeat(bus, laptop.user_id, connected_phone, connected=True)
    await _eventually(lambda: _has(laptop, (ONLINE, 1)))
    await laptop.heartbeat()
    assert await _state_of(laptop, laptop.user_id) == (ONLINE, 2)

    left_at = time.time()
    await _bus_heartbeat(bus, laptop.user_id, connected_phone, connected=False)
    await _eventually(lambda: _has(laptop, (ONLINE, 1)), timeout_s=1.0)  # not after the 60 s TTL
    (presence,) = await laptop.presence(laptop.user_id)
    assert _seconds(presence) >= left_at - 0.01  # it was active until it left


async def _has(device: Device, expected: tuple[int, int]) -> bool:
    return await _state_of(device, device.user_id) == expected


async def test_heartbeats_faster_than_once_a_second_are_resource_exhausted_with_retry_after(
    make_device: MakeDevice,
) -> None:
    phone = make_device()
    await phone.heartbeat()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await phone.heartbeat()
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    retry_after_ms = dict(err.value.trailing_metadata() or ())["retry-after-ms"]
    assert 0 < int(retry_after_ms) <= 1000
    await make_device(phone.user_id).heartbeat()  # another device of the same user is not limited


async def test_get_presence_answers_in_request_order_and_an_unknown_user_is_unspecified(
    make_device: MakeDevice, befriend: Befriend
) -> None:
    ann, bob = make_device(), make_device()
    await befriend(ann, bob)
    await ann.heartbeat()
    await bob.heartbeat(active=False)
    stranger = str(uuid.uuid4())
    presences = await ann.presence(bob.user_id, stranger, ann.user_id)
    assert [(p.user_id, p.state) for p in presences] == [
        (bob.user_id, AWAY),
        (stranger, UNSPECIFIED),
        (ann.user_id, ONLINE),
    ]
    assert not presences[1].HasField("last_seen_at") and presences[1].device_count == 0


async def test_last_seen_survives_a_restart_of_the_presence_service(
    replicas: Replicas, make_device: MakeDevice, presence: PresenceApp, bus: Client, befriend: Befriend
) -> None:
    left, stayed = make_device(), make_device()
    await left.heartbeat()
    await stayed.heartbeat()
    left_at = time.time()
    await _bus_heartbeat(bus, left.user_id, left.device_id, connected=False)
    await _eventually(lambda: _is_offline(left))
    await asyncio.sleep(0.5)  # the coalesced change, and with it the save, is due after the debounce
    await replicas.stop(presence)

    # A new bucket: its entries are what ages out of KV when no replica runs; CQL remains.
    restarted = await replicas.start(kv_bucket=f"presence_{uuid.uuid4().hex[:12]}")
    reader = make_device(app=restarted)
    await befriend(reader, left)
    await befriend(reader, stayed)
    was_left, was_staying = await reader.presence(left.user_id, stayed.user_id)
    assert (was_left.state, was_left.device_count) == (OFFLINE, 0)
    assert _seconds(was_left) == pytest.approx(left_at, abs=0.5)
    assert was_staying.state == OFFLINE  # saved when the replica stopped
    assert _seconds(was_staying) < left_at


async def test_watch_presence_sends_the_current_state_then_only_changes_of_watched_users(
    make_device: MakeDevice, befriend: Befriend
) -> None:
    ann, bob, cid = make_device(), make_device(), make_device()
    await befriend(cid, ann)
    await befriend(bob, cid)
    await ann.heartbeat()
    watcher = _watch(cid, ann.user_id, bob.user_id)
    try:
        first = await watcher.take(2)
        assert [(p.user_id, p.state) for p in first] == [(ann.user_id, ONLINE), (bob.user_id, UNSPECIFIED)]

        await cid.heartbeat()  # not watched
        await bob.heartbeat(active=False)
        change = await watcher.next()
        assert (change.user_id, change.state, change.device_count) == (bob.user_id, AWAY, 1)
        assert await watcher.nothing_for(0.8)
    finally:
        await watcher.close()


async def test_a_user_flapping_inside_the_debounce_window_is_sent_once_with_the_final_state(
    replicas: Replicas, make_device: MakeDevice, bus: Client, befriend: Befriend
) -> None:
    app = await replicas.start(debounce_s=1.0)
    ann, watcher_device = make_device(app=app), make_device(app=app)
    await befriend(ann, watcher_device)
    watcher = _watch(watcher_device, ann.user_id)
    try:
        assert (await watcher.next()).state == UNSPECIFIED
        tablet = str(uuid.uuid4())
        await ann.heartbeat()  # ONLINE 1: opens the window
        await _bus_heartbeat(bus, ann.user_id, ann.device_id, connected=False)  # OFFLINE
        await _bus_heartbeat(bus, ann.user_id, tablet, connected=True)  # ONLINE 1
        await _bus_heartbeat(bus, ann.user_id, tablet, connected=True, active=False)  # AWAY 1

        change = await watcher.next(timeout_s=3)
        assert (change.state, change.device_count) == (AWAY, 1)
        assert await watcher.nothing_for(1.5)
    finally:
        await watcher.close()


async def test_a_watch_leaves_nothing_behind_when_the_client_goes_away(
    presence: PresenceApp, make_device: MakeDevice, befriend: Befriend
) -> None:
    ann = make_device()
    watcher = _watch(ann, ann.user_id, str(uuid.uuid4()))
    await watcher.take(2)
    assert presence.tracker.watches.open_watches == 1
    await watcher.close()
    await _eventually(lambda: presence.tracker.watches.open_watches == 0)
    assert presence.tracker.watches.watched_users == 0


async def test_two_replicas_fold_the_same_state_and_a_change_is_published_once(
    replicas: Replicas, presence: PresenceApp, make_device: MakeDevice, bus: Client, befriend: Befriend
) -> None:
    second = await replicas.start()
    ann = make_device(app=presence)
    reader = make_device(app=second)
    await befriend(reader, ann)
    published: asyncio.Queue[events_pb2.Event] = asyncio.Queue()

    async def on_change(msg: object) -> None:
        await published.put(events_pb2.Event.FromString(msg.data))  # type: ignore[attr-defined]

    sub = await bus.subscribe(f"presence.changed.{ann.user_id}", cb=on_change)
    try:
        await bus.flush()
        await ann.heartbeat()
        await _eventually(lambda: _has_on(reader, ann.user_id, (ONLINE, 1)))

        event = await asyncio.wait_for(published.get(), 3)
        assert event.WhichOneof("kind") == "presence_changed"
        assert (event.presence_changed.presence.state, event.presence_changed.presence.device_count) == (ONLINE, 1)
        await asyncio.sleep(1.0)
        assert published.empty(), "each change is published by one replica only"
    finally:
        await sub.unsubscribe()


async def _has_on(device: Device, user_id: str, expected: tuple[int, int]) -> bool:
    return await _state_of(device, user_id) == expected


async def test_get_presence_of_more_than_500_users_is_invalid_argument(make_device: MakeDevice) -> None:
    ann = make_device()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ann.presence(*(str(uuid.uuid4()) for _ in range(501)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "user_ids" in (err.value.details() or "")
