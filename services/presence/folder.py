"""Folding per-device liveness into one presence per user.

A device is *live* while its last heartbeat is younger than the device TTL and it has
not said it left. A user is ONLINE if any live device is active, AWAY if devices are
live but none is active, OFFLINE once none is (or if a last seen is known), and
UNSPECIFIED if presence has never heard of them. ``last_seen_at`` is when any device of
the user was last active (an active heartbeat, or an active device leaving).

Every replica folds the same device records (from the shared KV bucket), so the fold
is deterministic: records carry their own wall-clock times, and ``now`` is passed in.
Only :meth:`PresenceFolder.expire` turns devices off when their TTL passes, so what a
reader sees and what is announced as a change come from the same sweep.

Knows nothing of gRPC or NATS.
"""

from __future__ import annotations

import enum
import heapq
from dataclasses import dataclass, field


class PresenceState(enum.IntEnum):
    """A user's folded state (values match chatmesh.presence.v1.PresenceState)."""

    UNSPECIFIED = 0
    ONLINE = 1
    AWAY = 2
    OFFLINE = 3


@dataclass(frozen=True)
class Presence:
    """One user's presence as readers see it."""

    user_id: str
    state: PresenceState
    last_seen_at: float | None
    device_count: int

    @property
    def change_key(self) -> tuple[PresenceState, int]:
        """What makes a change worth announcing (last seen alone is not)."""
        return self.state, self.device_count


@dataclass(frozen=True)
class DeviceRecord:
    """One device's liveness as stored in the shared bucket.

    Attributes:
        user_id: the device's user.
        device_id: the device.
        seen_at: unix seconds of the heartbeat (or of the leaving) this record reports.
        active: the app was in the foreground at ``seen_at``.
        active_at: unix seconds the device was last active; None if never.
        connected: False once the device left (its stream ended): gone now, not after the TTL.
    """

    user_id: str
    device_id: str
    seen_at: float
    active: bool
    active_at: float | None
    connected: bool


@dataclass
class _User:
    devices: dict[str, DeviceRecord] = field(default_factory=dict)
    live: set[str] = field(default_factory=set)
    last_seen: float | None = None
    # Known to presence: had a device, or has a stored last seen -> OFFLINE, not UNSPECIFIED.
    known: bool = False
    announced: tuple[PresenceState, int] = (PresenceState.UNSPECIFIED, 0)
    # The last seen known to be in the store (read from it, or handed out to be saved).
    saved: float | None = None


class PresenceFolder:
    """Device records in, one presence per user out.

    Memory: users with live devices, plus offline or looked-up users for
    ``retention_s`` (at most ``max_idle_users`` of them).
    """

    def __init__(self, device_ttl_s: float, retention_s: float, max_idle_users: int = 100_000) -> None:
        self._ttl = device_ttl_s
        self._retention = retention_s
        self._max_idle = max_idle_users
        self._users: dict[str, _User] = {}
        # (expires_at, user_id, device_id); stale entries (refreshed devices) are skipped on pop.
        self._deadlines: list[tuple[float, str, str]] = []
        # Users without live devices, oldest first (re-inserted when they go idle again).
        self._idle: dict[str, float] = {}

    @property
    def device_ttl_s(self) -> float:
        """Seconds a device stays live after a heartbeat."""
        return self._ttl

    def record(self, user_id: str, device_id: str, *, active: bool, connected: bool, now: float) -> DeviceRecord:
        """The record a heartbeat (or a leaving) of a device makes, carrying what is known of it.

        A device leaving while active was active until now; an inactive heartbeat keeps the
        time the device was last active.
        """
        user = self._users.get(user_id)
        previous = user.devices.get(device_id) if user else None
        was_active = previous is not None and previous.active and previous.connected
        if active and connected or (not connected and was_active):
            active_at: float | None = now
        else:
            active_at = previous.active_at if previous else None
        return DeviceRecord(user_id, device_id, now, active and connected, active_at, connected)

    def apply(self, record: DeviceRecord, now: float) -> bool:
        """Fold one device record in; True if the user's state or device count changed.

        A record older than the one held for the device is ignored (replays, reordering);
        one whose TTL already passed counts as the device having left.
        """
        user = self._users.get(record.user_id)
        if user is None:
            user = self._users[record.user_id] = _User()
        held = user.devices.get(record.device_id)
        if held is not None and (record.seen_at < held.seen_at or record == held):
            return False
        before = self._key(user)
        user.devices[record.device_id] = record
        user.known = True
        if record.active_at is not None and (user.last_seen is None or record.active_at > user.last_seen):
            user.last_seen = record.active_at
        expires_at = record.seen_at + self._ttl
        if record.connected and expires_at > now:
            user.live.add(record.device_id)
        else:
            user.live.discard(record.device_id)
        # Live devices are expired from here; left ones are dropped from memory after a TTL.
        heapq.heappush(self._deadlines, (expires_at, record.user_id, record.device_id))
        self._track_idle(record.user_id, user, now)
        return self._key(user) != before

    def expire(self, now: float, budget: int | None = None) -> list[str]:
        """Turn off devices whose TTL passed and forget long-idle users; the users whose state changed.

        ``budget`` bounds the deadlines looked at in one call (a mass expiry is then done in
        slices, see :meth:`expiry_due`).
        """
        changed: list[str] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            if budget is not None:
                if budget <= 0:
                    break
                budget -= 1
            _, user_id, device_id = heapq.heappop(self._deadlines)
            user = self._users.get(user_id)
            record = user.devices.get(device_id) if user else None
            if user is None or record is None or record.seen_at + self._ttl > now:
                continue  # forgotten, or refreshed since (a later deadline is queued)
            if device_id in user.live:
                before = self._key(user)
                user.live.discard(device_id)
                if self._key(user) != before:
                    changed.append(user_id)
                self._track_idle(user_id, user, now)
            del user.devices[device_id]  # its active_at lives on in user.last_seen
        self._forget_idle(now)
        return changed

    def expiry_due(self, now: float) -> bool:
        """True if some device's TTL has passed by ``now`` and :meth:`expire` has not seen it yet."""
        return bool(self._deadlines) and self._deadlines[0][0] <= now

    def presence(self, user_id: str) -> Presence | None:
        """The user's presence, or None if not in memory (unknown, or forgotten: ask the store)."""
        user = self._users.get(user_id)
        if user is None:
            return None
        state, count = self._key(user)
        return Presence(user_id, state, user.last_seen, count)

    def device(self, user_id: str, device_id: str) -> DeviceRecord | None:
        """The latest record held of a device (live or not), or None."""
        user = self._users.get(user_id)
        return user.devices.get(device_id) if user else None

    def remember(self, user_id: str, last_seen: float | None, now: float) -> Presence:
        """Hold a user read from the store (None: never seen) unless something newer is held."""
        user = self._users.get(user_id)
        if user is None:
            user = self._users[user_id] = _User(last_seen=last_seen, known=last_seen is not None, saved=last_seen)
            user.announced = self._key(user)  # nothing changed: it is only a lookup
            self._track_idle(user_id, user, now)
        presence = self.presence(user_id)
        assert presence is not None
        return presence

    def take_change(self, user_id: str) -> Presence | None:
        """The user's presence if it differs from the last one taken (and mark it taken)."""
        user = self._users.get(user_id)
        if user is None:
            return None
        key = self._key(user)
        if key == user.announced:
            return None
        user.announced = key
        return Presence(user_id, key[0], user.last_seen, key[1])

    def take_unsaved(self, user_id: str) -> float | None:
        """The last seen of an offline user if the store may not have it yet (and mark it handed out).

        Separate from :meth:`take_change`: a user who came and went within one window is
        no change to announce, but their last seen moved.
        """
        user = self._users.get(user_id)
        if user is None or user.live or user.last_seen is None:
            return None
        if user.saved is not None and user.saved >= user.last_seen:
            return None
        user.saved = user.last_seen
        return user.last_seen

    def settle(self) -> None:
        """Mark every user's state as announced (after replaying the bucket at start)."""
        for user in self._users.values():
            user.announced = self._key(user)

    def connected_users(self) -> list[Presence]:
        """Users with at least one live device."""
        return [p for p in (self.presence(u) for u, user in self._users.items() if user.live) if p is not None]

    def user_ids(self) -> list[str]:
        """Every user in memory."""
        return list(self._users)

    def __len__(self) -> int:
        return len(self._users)

    def _key(self, user: _User) -> tuple[PresenceState, int]:
        count = len(user.live)
        if count == 0:
            return (PresenceState.OFFLINE if user.known else PresenceState.UNSPECIFIED), 0
        if any(user.devices[d].active for d in user.live):
            return PresenceState.ONLINE, count
        return PresenceState.AWAY, count

    def _track_idle(self, user_id: str, user: _User, now: float) -> None:
        if user.live:
            self._idle.pop(user_id, None)
        elif user_id not in self._idle:
            self._idle[user_id] = now

    def _forget_idle(self, now: float) -> None:
        while self._idle:
            user_id, since = next(iter(self._idle.items()))
            user = self._users.get(user_id)
            if user is not None and since + self._retention > now and len(self._idle) <= self._max_idle:
                break
            del self._idle[user_id]
            if user is not None and user.live:
                continue  # defensive: a live user is never idle
            if user is not None and user.announced != self._key(user) and len(self._idle) < self._max_idle:
                self._idle[user_id] = now  # a change is still to be announced: keep it a while
                continue
            self._users.pop(user_id, None)
