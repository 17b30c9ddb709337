"""The presence use cases: heartbeats in, folded presence out, changes announced.

How it holds together across replicas:

- A heartbeat (the Heartbeat RPC, or a DeviceHeartbeat from session on the bus) makes
  a :class:`DeviceRecord`, written to the shared KV bucket (acknowledged before the
  RPC answers) and folded locally at once, so the caller reads its own write.
- Every replica follows the whole bucket and folds every record, so each holds the
  same presence of every connected user. A sweep turns devices off when their TTL
  passes (the bucket's max age only collects garbage; expiry notifications are not
  relied on).
- A change of a user's state or device count opens a coalescing window; when it ends,
  the user's state then (if it still differs from the last one announced) goes to
  this replica's WatchPresence streams, and, from the one replica that owns the user
  (:class:`ReplicaRing`), to ``presence.changed.<user_id>``; a user gone offline with
  a new last seen has it written to CQL by that owner.
- GetPresence reads the fold, and CQL for users not in memory.

Knows nothing of gRPC; NATS and CQL are behind the ports below.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from services.presence.coalescer import ChangeCoalescer
from services.presence.errors import HeartbeatTooFrequent, UnusableId
from services.presence.folder import DeviceRecord, Presence, PresenceFolder
from services.presence.ring import ReplicaRing
from services.presence.watches import WatchIndex
from services.runtime.ratelimit import RateLimiter
from services.runtime.tasks import cancel_and_wait

log = logging.getLogger("chatmesh.presence")

# Ids become KV key tokens, NATS subject tokens and CQL uuids: UUIDs only.
_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


# Deadlines looked at between two yields to the event loop (~50 ms of work).
_EXPIRY_SLICE = 5_000


@dataclass(frozen=True)
class ReplicaSeen:
    """A replica registered (``seen_at`` unix seconds) or left (None)."""

    replica_id: str
    seen_at: float | None


@dataclass(frozen=True)
class ReplayDone:
    """Every entry that existed when the watch started has been delivered."""


BucketEntry = DeviceRecord | ReplicaSeen | ReplayDone


class DeviceBucketPort(Protocol):
    """The shared bucket of device records and replica registrations."""

    async def put_device(self, record: DeviceRecord) -> None:
        """Store the device's record (acknowledged)."""
        ...

    async def put_replica(self, replica_id: str, seen_at: float) -> None:
        """Register a replica as live at ``seen_at``."""
        ...

    async def remove_replica(self, replica_id: str) -> None:
        """Deregister a replica."""
        ...

    def follow(self) -> AsyncIterator[BucketEntry]:
        """Every current entry, then ReplayDone, then every change, until cancelled."""
        ...


class LastSeenPort(Protocol):
    """Where last seen outlives the bucket."""

    async def save(self, user_id: str, last_seen: float) -> None:
        """Store ``last_seen`` unless a later one is stored."""
        ...

    async def load(self, user_ids: Sequence[str]) -> dict[str, float]:
        """Stored last seen of those of ``user_ids`` that have one (raises LastSeenUnavailable)."""
        ...


class PresenceEventsPort(Protocol):
    """Where announced changes go besides this replica's watches."""

    async def presence_changed(self, presence: Presence) -> None:
        """Publish a user's changed presence."""
        ...


@dataclass(frozen=True)
class TrackerSettings:
    """The knobs of :class:`PresenceTracker` (from PresenceSettings)."""

    device_ttl_s: int
    heartbeat_min_interval_s: float
    debounce_s: float
    sweep_interval_s: float
    offline_retention_s: float
    offline_cache_size: int
    max_watches: int
    replay_timeout_s: float = 30.0
    save_timeout_on_stop_s: float = 10.0


def check_id(field: str, value: str) -> None:
    """Raise UnusableId unless ``value`` is a UUID (it names KV keys and subjects)."""
    if not _ID.match(value):
        raise UnusableId(field)


class PresenceTracker:
    """One replica's view of everyone's presence, and the use cases on it."""

    def __init__(
        self,
        settings: TrackerSettings,
        bucket: DeviceBucketPort,
        last_seen: LastSeenPort,
        events: PresenceEventsPort,
        replica_id: str,
    ) -> None:
        self._settings = settings
        self._bucket = bucket
        self._store = last_seen
        self._events = events
        self.folder = PresenceFolder(settings.device_ttl_s, settings.offline_retention_s, settings.offline_cache_size)
        self.ring = ReplicaRing(replica_id, settings.device_ttl_s)
        self.watches = WatchIndex(settings.max_watches)
        self._coalescer = ChangeCoalescer(settings.debounce_s)
        interval = settings.heartbeat_min_interval_s
        self._beats = RateLimiter(1 / interval, 1) if interval > 0 else None
        self._replayed = asyncio.Event()
        self._wake = asyncio.Event()
        self._unsaved: dict[str, float] = {}
        self._unsaved_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def next_heartbeat_s(self) -> int:
        """Seconds a device should wait between heartbeats (it is gone after twice this)."""
        return max(1, self._settings.device_ttl_s // 2)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Register, fold the whole bucket, then start following, sweeping and announcing."""
        await self._register()
        self._tasks.append(asyncio.create_task(self._follow(), name="presence-follow"))
        try:
            async with asyncio.timeout(self._settings.replay_timeout_s):
                await self._replayed.wait()
        except TimeoutError:
            await self.stop()
            raise
        for name, loop in (("announce", self._announce_loop), ("sweep", self._sweep_loop), ("save", self._save_loop)):
            self._tasks.append(asyncio.create_task(loop(), name=f"presence-{name}"))
        log.info("presence started", extra={"replica_id": self.ring.self_id, "users": len(self.folder)})

    async def stop(self) -> None:
        """Stop the loops, save the last seen of this replica's connected users, deregister."""
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
        now = time.time()
        # If every replica stops, the bucket's entries age out: CQL must know when they were last seen.
        for presence in self.folder.connected_users():
            if presence.last_seen_at is not None and self.ring.owns(presence.user_id, now):
                self._queue_save(presence.user_id, presence.last_seen_at)
        try:
            async with asyncio.timeout(self._settings.save_timeout_on_stop_s):
                while self._unsaved:
                    if not await self._save_batch():
                        await asyncio.sleep(0.5)
        except TimeoutError:
            log.warning("last seen not saved on stop", extra={"users": len(self._unsaved)})
        try:
            await self._bucket.remove_replica(self.ring.self_id)
        except Exception:  # noqa: BLE001 - stopping anyway; the registration ages out
            log.warning("could not deregister replica", exc_info=True)

    # -- use cases -------------------------------------------------------------------

    async def heartbeat(self, user_id: str, device_id: str, active: bool) -> int:
        """A device says it is alive (Heartbeat RPC); the seconds until the next is due.

        Raises:
            UnusableId: an id that is not a UUID.
            HeartbeatTooFrequent: closer to the device's last heartbeat than allowed.
        """
        check_id("user_id", user_id)
        check_id("device_id", device_id)
        if self._beats is not None:
            wait = self._beats.acquire(f"{user_id}.{device_id}", time.monotonic())
            if wait:
                raise HeartbeatTooFrequent(wait)
        await self._report(user_id, device_id, active=active, connected=True)
        return self.next_heartbeat_s

    async def device_heartbeat(self, user_id: str, device_id: str, *, connected: bool, active: bool) -> bool:
        """A device's liveness from session's Connect stream; False if dropped (bad id, too fast)."""
        if not (_ID.match(user_id) and _ID.match(device_id)):
            return False
        # Only repeats are limited: leaving, or going active or away, must take effect now.
        held = self.folder.device(user_id, device_id)
        repeat = held is not None and connected and held.connected and held.active == active
        limited = self._beats is not None and self._beats.acquire(f"{user_id}.{device_id}", time.monotonic()) > 0
        if repeat and limited:
            return False
        await self._report(user_id, device_id, active=active, connected=connected)
        return True

    async def presences(self, user_ids: Sequence[str]) -> list[Presence]:
        """The presence of each of ``user_ids``, in order (raises LastSeenUnavailable)."""
        found: dict[str, Presence | None] = {u: self.folder.presence(u) for u in user_ids}
        missing = [u for u, p in found.items() if p is None]
        if missing:
            stored = await self._store.load(missing)
            now = time.time()
            for user_id in missing:
                found[user_id] = self.folder.remember(user_id, stored.get(user_id), now)
        return [p for p in (found[u] for u in user_ids) if p is not None]

    async def watch(self, user_ids: Sequence[str], first: Sequence[Presence] = ()) -> AsyncGenerator[Presence, None]:
        """``first``, the current presence of each of ``user_ids``, then their announced changes, until closed.

        ``first``: presences sent as they are once the watch is open (what a viewer may see
        of users it may not watch: they never change).

        Raises:
            TooManyWatches: this replica serves its most watches.
            LastSeenUnavailable: the first states could not be read.
        """
        watch = self.watches.open(user_ids)
        try:
            for presence in first:
                yield presence
            for presence in watch.mark_sent(await self.presences(user_ids)):
                yield presence
            while True:
                for presence in await watch.changes():
                    yield presence
        finally:
            self.watches.close(watch)

    # -- folding ---------------------------------------------------------------------

    async def _report(self, user_id: str, device_id: str, *, active: bool, connected: bool) -> None:
        record = self.folder.record(user_id, device_id, active=active, connected=connected, now=time.time())
        await self._bucket.put_device(record)
        self._fold(record)

    def _fold(self, record: DeviceRecord) -> None:
        if self.folder.apply(record, time.time()) and self._replayed.is_set():
            self._touch([record.user_id])

    def _touch(self, user_ids: Iterable[str]) -> None:
        now = time.monotonic()
        for user_id in user_ids:
            if self._coalescer.touch(user_id, now):
                self._wake.set()

    async def _follow(self) -> None:
        """Fold every bucket entry, resuming after failures (a resume replays; equal records are no-ops)."""
        while True:
            try:
                async for entry in self._bucket.follow():
                    if isinstance(entry, DeviceRecord):
                        self._fold(entry)
                    elif isinstance(entry, ReplicaSeen):
                        self.ring.apply(entry.replica_id, entry.seen_at)
                    elif not self._replayed.is_set():
                        self._after_replay()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the watch must outlive NATS hiccups
                log.warning("bucket watch failed; resuming", exc_info=True)
            await asyncio.sleep(1.0)

    def _after_replay(self) -> None:
        # What the bucket held is not news (other replicas announced it), except devices
        # that expired while no replica ran: their owner still has to save the last seen.
        self.folder.settle()
        for user_id in self.folder.user_ids():
            self._save_if_owned(user_id)
        self._replayed.set()

    # -- loops -------------------------------------------------------------------------

    async def _announce_loop(self) -> None:
        while True:
            deadline = self._coalescer.next_deadline()
            if deadline is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            delay = deadline - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            for user_id in self._coalescer.due(time.monotonic()):
                await self._announce(user_id)

    async def _announce(self, user_id: str) -> None:
        # None: it flapped back to what was last announced (its last seen may still have moved).
        change = self.folder.take_change(user_id)
        if change is not None:
            self.watches.deliver(change)
            if self.ring.owns(user_id, time.time()):
                try:
                    await self._events.presence_changed(change)
                except Exception:  # noqa: BLE001 - watchers here got it; NATS comes back
                    log.warning("presence change not published", extra={"user_id": user_id}, exc_info=True)
        self._save_if_owned(user_id)

    def _save_if_owned(self, user_id: str) -> None:
        """Queue the user's last seen for CQL if they are offline with a new one and this replica owns them."""
        last_seen = self.folder.take_unsaved(user_id)
        if last_seen is not None and self.ring.owns(user_id, time.time()):
            self._queue_save(user_id, last_seen)

    async def _sweep_loop(self) -> None:
        registered = time.monotonic()
        while True:
            await asyncio.sleep(self._settings.sweep_interval_s)
            now = time.time()
            self._touch(self.folder.expire(now, _EXPIRY_SLICE))
            while self.folder.expiry_due(now):  # a mass expiry: let RPCs in between slices
                await asyncio.sleep(0)
                self._touch(self.folder.expire(now, _EXPIRY_SLICE))
            mono = time.monotonic()
            if mono - registered >= self._settings.device_ttl_s / 3:
                try:
                    await self._register()
                    registered = mono
                except Exception:  # noqa: BLE001 - retried next sweep
                    log.warning("replica registration failed", exc_info=True)

    async def _register(self) -> None:
        now = time.time()
        await self._bucket.put_replica(self.ring.self_id, now)
        self.ring.apply(self.ring.self_id, now)

    # -- saving last seen ------------------------------------------------------------

    def _queue_save(self, user_id: str, last_seen: float) -> None:
        held = self._unsaved.get(user_id)
        self._unsaved[user_id] = last_seen if held is None else max(held, last_seen)
        self._unsaved_ready.set()

    async def _save_loop(self) -> None:
        while True:
            await self._unsaved_ready.wait()
            self._unsaved_ready.clear()
            if not await self._save_batch():
                await asyncio.sleep(1.0)  # CQL is down: the values stay queued, retry shortly
            if self._unsaved:
                self._unsaved_ready.set()

    async def _save_batch(self, limit: int = 256) -> bool:
        """Write up to ``limit`` queued last seens; False if any failed (they stay queued)."""
        batch = list(self._unsaved.items())[:limit]
        for user_id, _ in batch:
            del self._unsaved[user_id]
        results = await asyncio.gather(*(self._store.save(u, t) for u, t in batch), return_exceptions=True)
        failed = [(u, t) for (u, t), r in zip(batch, results, strict=True) if isinstance(r, BaseException)]
        for user_id, last_seen in failed:
            self._queue_save(user_id, last_seen)
        if failed:
            log.warning("last seen not saved; will retry", extra={"users": len(failed)})
        return not failed
