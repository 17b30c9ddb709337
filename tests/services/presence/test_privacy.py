"""Presence privacy: contacts only, and last seen only when its owner shows it (issue 13, item 9)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from nats.aio.client import Client

from chatmesh.events.v1 import events_pb2
from chatmesh.presence.v1 import presence_pb2 as pb
from services.runtime.server import ServiceServer
from tests.services.presence.conftest import Befriend, Device, Replicas
from tests.services.presence.watching import Watcher

MakeDevice = Callable[..., Device]
ONLINE, UNSPECIFIED = pb.PRESENCE_STATE_ONLINE, pb.PRESENCE_STATE_UNSPECIFIED


def _watch(device: Device, *user_ids: str) -> Watcher:
    return Watcher(device.stub.WatchPresence(pb.WatchPresenceRequest(user_ids=list(user_ids)), metadata=device.auth))


def _shape(presence: pb.UserPresence) -> tuple[int, bool, int]:
    """All a reader learns of a user besides the id."""
    return presence.state, presence.HasField("last_seen_at"), presence.device_count


async def _hide_last_seen(device: Device, hide: bool) -> pb.UpdatePrivacyResponse:
    return await device.stub.UpdatePrivacy(
        pb.UpdatePrivacyRequest(privacy=pb.PrivacySettings(hide_last_seen=hide)), metadata=device.auth
    )


@pytest.fixture
async def changes(bus: Client) -> AsyncIterator[Callable[[str], asyncio.Queue[pb.UserPresence]]]:
    """Presence changes published for a user, as session's Connect streams receive them."""
    subscriptions = []

    async def follow(user_id: str) -> asyncio.Queue[pb.UserPresence]:
        queue: asyncio.Queue[pb.UserPresence] = asyncio.Queue()

        async def on_change(msg: object) -> None:
            event = events_pb2.Event.FromString(msg.data)  # type: ignore[attr-defined]
            await queue.put(event.presence_changed.presence)

        subscriptions.append(await bus.subscribe(f"presence.changed.{user_id}", cb=on_change))
        await bus.flush()
        return queue

    try:
        yield follow  # type: ignore[misc]
    finally:
        for subscription in subscriptions:
            await subscription.unsubscribe()


async def test_a_stranger_sees_an_online_user_exactly_as_one_never_seen(
    make_device: MakeDevice, befriend: Befriend
) -> None:
    ann, friend, stranger = make_device(), make_device(), make_device()
    await befriend(friend, ann)
    await ann.heartbeat()
    never_online = str(uuid.uuid4())

    (seen_by_friend,) = await friend.presence(ann.user_id)
    assert (seen_by_friend.state, seen_by_friend.device_count) == (ONLINE, 1)
    assert seen_by_friend.HasField("last_seen_at")

    of_ann, of_nobody = await stranger.presence(ann.user_id, never_online)
    assert _shape(of_ann) == _shape(of_nobody) == (UNSPECIFIED, False, 0)
    assert of_ann.user_id == ann.user_id


async def test_becoming_contacts_shows_presence(make_device: MakeDevice, befriend: Befriend) -> None:
    ann, bob = make_device(), make_device()
    await ann.heartbeat()
    assert _shape((await bob.presence(ann.user_id))[0]) == (UNSPECIFIED, False, 0)
    await befriend(ann, bob)  # either member starting the conversation makes both contacts
    assert (await bob.presence(ann.user_id))[0].state == ONLINE


async def test_a_strangers_watch_gets_a_never_seen_state_and_then_nothing(
    make_device: MakeDevice, befriend: Befriend
) -> None:
    ann, friend, stranger = make_device(), make_device(), make_device()
    await befriend(ann, friend)
    friend_watch, stranger_watch = _watch(friend, ann.user_id), _watch(stranger, ann.user_id)
    try:
        assert _shape(await stranger_watch.next()) == (UNSPECIFIED, False, 0)
        assert _shape(await friend_watch.next()) == (UNSPECIFIED, False, 0)  # ann was never online yet
        await ann.heartbeat()
        change = await friend_watch.next()
        assert (change.state, change.device_count) == (ONLINE, 1)
        assert await stranger_watch.nothing_for(0.8)
    finally:
        await friend_watch.close()
        await stranger_watch.close()


async def test_a_user_who_hides_last_seen_shows_it_to_nobody_else(
    make_device: MakeDevice, befriend: Befriend, changes: Callable[[str], object]
) -> None:
    ann, friend = make_device(), make_device()
    await befriend(ann, friend)
    assert (await ann.stub.GetPrivacy(pb.GetPrivacyRequest(), metadata=ann.auth)).privacy.hide_last_seen is False
    assert (await _hide_last_seen(ann, True)).privacy.hide_last_seen is True
    assert (await ann.stub.GetPrivacy(pb.GetPrivacyRequest(), metadata=ann.auth)).privacy.hide_last_seen is True
    published = await changes(ann.user_id)  # type: ignore[operator]
    await ann.heartbeat()

    (seen,) = await friend.presence(ann.user_id)
    assert (seen.state, seen.device_count, seen.HasField("last_seen_at")) == (ONLINE, 1, False)
    (own,) = await ann.presence(ann.user_id)
    assert own.HasField("last_seen_at")  # one's own is always shown to oneself
    on_the_bus = await asyncio.wait_for(published.get(), 5)  # what Connect streams relay
    assert on_the_bus.state == ONLINE and not on_the_bus.HasField("last_seen_at")

    await _hide_last_seen(ann, False)
    (seen,) = await friend.presence(ann.user_id)
    assert seen.HasField("last_seen_at")


async def test_a_user_id_in_upper_case_is_the_same_user(make_device: MakeDevice, befriend: Befriend) -> None:
    ann, friend = make_device(), make_device()
    await befriend(friend, ann)
    await ann.heartbeat()
    (presence,) = await friend.presence(ann.user_id.upper())
    assert presence.user_id == ann.user_id
    assert (presence.state, presence.device_count) == (ONLINE, 1)


async def test_a_watch_of_strangers_only_is_a_watch_like_any_other(
    replicas: Replicas, make_device: MakeDevice, history_service: ServiceServer
) -> None:
    app = await replicas.start(max_watches=1)
    ann, stranger = make_device(app=app), make_device(app=app)
    watch = _watch(stranger, ann.user_id)
    try:
        assert _shape(await watch.next()) == (UNSPECIFIED, False, 0)
        assert app.tracker.watches.open_watches == 1
        second = _watch(stranger, ann.user_id)  # the replica's limit holds for these too
        async with asyncio.timeout(5):
            while second.error is None:
                await asyncio.sleep(0.05)
        assert second.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await watch.close()
    deadline = asyncio.get_running_loop().time() + 5
    while app.tracker.watches.open_watches and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    assert app.tracker.watches.open_watches == 0
