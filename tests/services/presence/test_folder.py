"""Folding device records into one presence per user (the domain alone, time passed in)."""

from __future__ import annotations

from services.presence.folder import DeviceRecord, Presence, PresenceFolder, PresenceState

TTL = 60.0
T0 = 1_700_000_000.0


def _folder() -> PresenceFolder:
    return PresenceFolder(device_ttl_s=TTL, retention_s=600)


def _beat(folder: PresenceFolder, user: str, device: str, at: float, *, active: bool = True) -> bool:
    return folder.apply(folder.record(user, device, active=active, connected=True, now=at), at)


def _leave(folder: PresenceFolder, user: str, device: str, at: float) -> bool:
    return folder.apply(folder.record(user, device, active=False, connected=False, now=at), at)


def test_two_active_devices_fold_to_online_with_two_devices() -> None:
    folder = _folder()
    assert _beat(folder, "ann", "phone", T0)
    assert _beat(folder, "ann", "laptop", T0 + 1)
    assert folder.presence("ann") == Presence("ann", PresenceState.ONLINE, T0 + 1, 2)


def test_a_user_whose_devices_are_all_in_the_background_is_away_and_one_active_device_makes_them_online() -> None:
    folder = _folder()
    _beat(folder, "ann", "phone", T0, active=False)
    _beat(folder, "ann", "laptop", T0, active=False)
    away = folder.presence("ann")
    assert away is not None and (away.state, away.device_count) == (PresenceState.AWAY, 2)
    assert away.last_seen_at is None  # never active yet
    _beat(folder, "ann", "laptop", T0 + 5)
    online = folder.presence("ann")
    assert online is not None and online.state is PresenceState.ONLINE


def test_a_device_counts_until_its_ttl_passes_then_the_user_is_offline_with_last_seen() -> None:
    folder = _folder()
    _beat(folder, "ann", "phone", T0)
    assert folder.expire(T0 + TTL - 0.1) == []
    assert folder.expire(T0 + TTL) == ["ann"]
    assert folder.presence("ann") == Presence("ann", PresenceState.OFFLINE, T0, 0)


def test_a_heartbeat_before_the_ttl_keeps_the_device() -> None:
    folder = _folder()
    _beat(folder, "ann", "phone", T0)
    _beat(folder, "ann", "phone", T0 + 30)
    assert folder.expire(T0 + TTL + 1) == []
    presence = folder.presence("ann")
    assert presence is not None and presence.state is PresenceState.ONLINE


def test_a_device_that_leaves_is_gone_at_once_and_last_seen_is_when_it_left() -> None:
    folder = _folder()
    _beat(folder, "ann", "phone", T0)
    _beat(folder, "ann", "laptop", T0)
    assert _leave(folder, "ann", "laptop", T0 + 10)
    assert folder.presence("ann") == Presence("ann", PresenceState.ONLINE, T0 + 10, 1)
    assert _leave(folder, "ann", "phone", T0 + 12)
    assert folder.presence("ann") == Presence("ann", PresenceState.OFFLINE, T0 + 12, 0)


def test_an_away_heartbeat_keeps_the_time_the_device_was_last_active() -> None:
    folder = _folder()
    _beat(folder, "ann", "phone", T0)
    _beat(folder, "ann", "phone", T0 + 30, active=False)
    assert folder.presence("ann") == Presence("ann", PresenceState.AWAY, T0, 1)


def test_an_older_record_arriving_late_does_not_undo_a_newer_one() -> None:
    folder = _folder()
    old = DeviceRecord("ann", "phone", T0, True, T0, True)
    left = DeviceRecord("ann", "phone", T0 + 5, False, T0 + 5, False)
    folder.apply(left, T0 + 5)
    assert not folder.apply(old, T0 + 6)
    presence = folder.presence("ann")
    assert presence is not None and presence.state is PresenceState.OFFLINE


def test_a_record_whose_ttl_already_passed_counts_as_gone() -> None:
    folder = _folder()
    stale = DeviceRecord("ann", "phone", T0, True, T0, True)
    folder.apply(stale, T0 + TTL + 1)
    assert folder.presence("ann") == Presence("ann", PresenceState.OFFLINE, T0, 0)


def test_a_change_is_taken_once_and_flapping_back_is_no_change() -> None:
    folder = _folder()
    _beat(folder, "ann", "phone", T0)
    change = folder.take_change("ann")
    assert change is not None and change.change_key == (PresenceState.ONLINE, 1)
    assert folder.take_change("ann") is None
    _beat(folder, "ann", "laptop", T0 + 1)
    _leave(folder, "ann", "laptop", T0 + 2)
    assert folder.take_change("ann") is None  # back to ONLINE with one device


def test_a_user_read_from_the_store_is_offline_or_unspecified_and_no_change() -> None:
    folder = _folder()
    assert folder.remember("ann", T0, T0 + 100) == Presence("ann", PresenceState.OFFLINE, T0, 0)
    assert folder.remember("bob", None, T0 + 100) == Presence("bob", PresenceState.UNSPECIFIED, None, 0)
    assert folder.take_change("ann") is None and folder.take_change("bob") is None


def test_idle_users_are_forgotten_after_the_retention_but_connected_ones_stay() -> None:
    folder = PresenceFolder(device_ttl_s=TTL, retention_s=120)
    folder.remember("ann", T0, T0)
    _beat(folder, "bob", "phone", T0)
    folder.expire(T0 + 119)
    assert folder.presence("ann") is not None
    for second in range(120, 200, 20):
        _beat(folder, "bob", "phone", T0 + second)
    folder.expire(T0 + 200)
    assert folder.presence("ann") is None  # GetPresence reads the store again
    assert folder.presence("bob") is not None


def test_idle_users_past_the_cap_are_forgotten_oldest_first() -> None:
    folder = PresenceFolder(device_ttl_s=TTL, retention_s=600, max_idle_users=2)
    for i, user in enumerate(["a", "b", "c"]):
        folder.remember(user, T0, T0 + i)
    folder.expire(T0 + 10)
    assert [u for u in "abc" if folder.presence(u) is not None] == ["b", "c"]


def test_a_user_who_came_and_went_within_a_window_is_no_change_but_their_new_last_seen_is_to_be_saved() -> None:
    folder = _folder()
    folder.remember("ann", T0, T0)  # as read from the store
    assert folder.take_unsaved("ann") is None
    _beat(folder, "ann", "phone", T0 + 100)
    assert folder.take_unsaved("ann") is None  # connected: nothing to save yet
    _leave(folder, "ann", "phone", T0 + 101)
    assert folder.take_change("ann") is None
    assert folder.take_unsaved("ann") == T0 + 101
    assert folder.take_unsaved("ann") is None  # handed out once


def test_a_mass_expiry_can_be_done_in_slices() -> None:
    folder = _folder()
    for i in range(10):
        _beat(folder, f"user-{i}", "phone", T0)
    first = folder.expire(T0 + TTL, budget=4)
    assert len(first) == 4 and folder.expiry_due(T0 + TTL)
    rest = folder.expire(T0 + TTL, budget=100)
    assert sorted(first + rest) == sorted(f"user-{i}" for i in range(10))
    assert not folder.expiry_due(T0 + TTL)
