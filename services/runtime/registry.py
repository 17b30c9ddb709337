"""The mesh's service registry: which replicas of which service serve where, with a TTL.

Every replica writes one record into the ``REGISTRY`` JetStream KV bucket under
``<service>.<replica>`` (:class:`Registration`) and rewrites it every heartbeat; before it
stops it rewrites it as DRAINING, and once stopped it deletes it. The xDS control plane
follows the bucket (:class:`RegistryView`) and turns the live records into Envoy's
endpoints. A replica that dies without deleting its key (SIGKILL, a lost machine) stops
heartbeating: the view drops it once its last heartbeat is older than its TTL, by a sweep
timer, without waiting for any marker from NATS.

The seed's discovery service kept the same facts with home-made gossip; here NATS
JetStream is the one store every process already talks to, replicated like the other
buckets (``NatsSettings.stream_replicas``).

While NATS is unreachable a replica keeps serving and keeps trying to heartbeat; the view
keeps what it had, and its TTL sweep still drops replicas that stopped heartbeating.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Literal

from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.runtime.bus import ensure_kv
from services.runtime.tasks import cancel_and_wait

log = logging.getLogger("chatmesh.registry")

BUCKET = "REGISTRY"
#: The bucket forgets records older than this (a replica heartbeats every second or so, so
#: only dead replicas' records get this old): garbage collection, not liveness.
BUCKET_TTL_S = 120.0
#: NATS KV keys: letters, digits and ``-_=/.``; a service or replica name has no dot.
NAME_PATTERN = r"^[A-Za-z0-9_=-][A-Za-z0-9_=/-]{0,99}$"
_RETRY_S = 1.0

Health = Literal["SERVING", "DRAINING"]


class ReplicaRecord(BaseModel):
    """One replica of a service as the registry (or Kubernetes) knows it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    service: str = Field(pattern=NAME_PATTERN, description="Short service name (history), the Envoy cluster.")
    replica: str = Field(pattern=NAME_PATTERN, description="This replica's name, unique within the service.")
    host: str = Field(min_length=1, max_length=253, description="Address other processes reach it at.")
    port: int = Field(ge=1, le=65535, description="Its gRPC port.")
    health: Health = Field(description="SERVING takes new calls; DRAINING finishes the ones it has.")
    zone: str = Field(default="local", max_length=63, description="Locality zone, for zone-aware balancing.")
    started_at: float = Field(default=0.0, ge=0, description="Unix seconds when it started serving.")
    heartbeat_at: float = Field(default=0.0, ge=0, description="Unix seconds of its last heartbeat.")
    ttl_s: float = Field(
        default=3.0, gt=0, le=3600, description="After this long without a heartbeat the replica counts as gone."
    )

    @property
    def key(self) -> str:
        """Its key in the bucket: ``<service>.<replica>``."""
        return f"{self.service}.{self.replica}"

    def same_endpoint(self, other: ReplicaRecord) -> bool:
        """True if only the heartbeat time differs (nothing Envoy would see changed)."""
        return self.model_dump(exclude={"heartbeat_at"}) == other.model_dump(exclude={"heartbeat_at"})


def bucket_config() -> KeyValueConfig:
    """The bucket every process declares the same way (idempotent).

    In memory: records are rewritten every second and are worth nothing after a restart
    of NATS (every live replica writes its record again within a heartbeat).
    """
    return KeyValueConfig(bucket=BUCKET, history=1, ttl=BUCKET_TTL_S, storage=StorageType.MEMORY, max_value_size=1024)


class Registration:
    """One replica's record in the registry: written at start, every heartbeat, and on health changes."""

    def __init__(self, js: JetStreamContext, record: ReplicaRecord, ttl_s: float, heartbeat_s: float) -> None:
        """Describe the registration; nothing is written until :meth:`start`.

        Args:
            js: JetStream of a connection that reconnects by itself (``bus.connect``).
            record: the replica; ``heartbeat_at`` and ``ttl_s`` are set on every write.
            ttl_s: how long readers keep the record without a heartbeat.
            heartbeat_s: seconds between heartbeats (well under ``ttl_s``).
        """
        if heartbeat_s >= ttl_s:
            raise ValueError(f"heartbeat_s ({heartbeat_s}) must be shorter than ttl_s ({ttl_s})")
        self._js = js
        self._record = record.model_copy(update={"ttl_s": ttl_s})
        self._heartbeat_s = heartbeat_s
        self._kv: KeyValue | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    @property
    def record(self) -> ReplicaRecord:
        """The record as last written (or about to be)."""
        return self._record

    async def start(self) -> None:
        """Write the record now (best effort) and heartbeat in the background until :meth:`stop`."""
        await self._write()
        if self._task is None:
            self._task = asyncio.create_task(self._heartbeat(), name=f"registry-heartbeat-{self._record.key}")

    async def set_health(self, health: Health) -> None:
        """Change the advertised health and write it at once (readers see it within milliseconds)."""
        self._record = self._record.model_copy(update={"health": health})
        await self._write()

    async def stop(self) -> None:
        """Stop heartbeating and delete the record (best effort: else it ages out within its TTL)."""
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None
        try:
            async with asyncio.timeout(self._heartbeat_s + 1.0):
                kv = await self._bucket()
                await kv.delete(self._record.key)
        except Exception as exc:  # noqa: BLE001 - NATS down: the record ages out on its own
            log.warning(
                "could not deregister; the record expires within its TTL",
                extra={"key": self._record.key, "reason": str(exc) or type(exc).__name__},
            )

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            await ensure_kv(self._js, bucket_config())
            self._kv = await self._js.key_value(BUCKET)
        return self._kv

    async def _write(self) -> bool:
        self._record = self._record.model_copy(update={"heartbeat_at": time.time()})
        try:
            # A put that cannot finish within a heartbeat is worth nothing: the next one follows.
            async with asyncio.timeout(max(self._heartbeat_s, 0.5)):
                kv = await self._bucket()
                await kv.put(self._record.key, self._record.model_dump_json().encode())
        except Exception as exc:  # noqa: BLE001 - NATS down or reconnecting: keep serving, retry
            self._kv = None  # the bucket may be gone with a restarted NATS: declare it again
            if not self._failing:
                log.warning(
                    "registry unreachable; retrying every heartbeat",
                    extra={"key": self._record.key, "reason": str(exc) or type(exc).__name__},
                )
            self._failing = True
            return False
        if self._failing:
            log.info("registry reachable again", extra={"key": self._record.key})
            self._failing = False
        return True

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            await self._write()


def parse_record(value: bytes) -> ReplicaRecord | None:
    """The record in a bucket value; None (logged) if it is not one."""
    try:
        return ReplicaRecord.model_validate(json.loads(value))
    except (ValueError, ValidationError) as exc:
        log.warning("not a registry record; ignored", extra={"reason": str(exc).splitlines()[0]})
        return None


class ReplicaTable:
    """The live replicas of every service, and a notification when that set changes.

    Fed by :class:`RegistryView` (the KV bucket) or by the Kubernetes source of the xDS
    control plane; read by the control plane, which waits in :meth:`wait_changed`.
    Records carry a deadline (last heartbeat + TTL); :meth:`sweep` drops the expired ones.
    A heartbeat that changes nothing but its time is no change.

    Args:
        clock: monotonic seconds (tests pass a fake one).
        wall: unix seconds, to age records that were written before this process read them.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._wall = wall
        self._records: dict[str, ReplicaRecord] = {}
        self._deadlines: dict[str, float] = {}
        self._version = 0
        self._event = asyncio.Event()
        self._ready = asyncio.Event()

    @property
    def version(self) -> int:
        """Grows by one on every change of the live set."""
        return self._version

    @property
    def ready(self) -> bool:
        """True once the source has loaded what it had at start (an empty table means empty)."""
        return self._ready.is_set()

    def mark_ready(self) -> None:
        """The source's initial load is in; wakes waiters even if nothing changed."""
        if not self._ready.is_set():
            self._ready.set()
            self._changed()

    def records(self) -> list[ReplicaRecord]:
        """Every live record, by key."""
        return [self._records[k] for k in sorted(self._records)]

    def by_service(self) -> dict[str, list[ReplicaRecord]]:
        """Live records grouped by service, each list by replica name."""
        grouped: dict[str, list[ReplicaRecord]] = {}
        for record in self.records():
            grouped.setdefault(record.service, []).append(record)
        return grouped

    def put(self, record: ReplicaRecord, *, expires: bool = True) -> None:
        """Add or refresh a record; ``expires=False`` keeps it until removed (Kubernetes)."""
        if expires:
            age = min(max(self._wall() - record.heartbeat_at, 0.0), record.ttl_s)
            self._deadlines[record.key] = self._clock() + record.ttl_s - age
        else:
            self._deadlines.pop(record.key, None)
        old = self._records.get(record.key)
        self._records[record.key] = record
        if old is None or not old.same_endpoint(record):
            self._changed()

    def remove(self, key: str) -> None:
        """Forget the record under ``key`` (deregistered), if any."""
        self._deadlines.pop(key, None)
        if self._records.pop(key, None) is not None:
            self._changed()

    def replace_all(self, records: Iterable[ReplicaRecord], *, within: Callable[[str], bool]) -> None:
        """Make the records whose key satisfies ``within`` exactly ``records`` (non-expiring)."""
        wanted = {r.key: r for r in records}
        for key in [k for k in self._records if within(k) and k not in wanted]:
            self.remove(key)
        for record in wanted.values():
            self.put(record, expires=False)

    def sweep(self) -> list[str]:
        """Drop records past their deadline; returns their keys."""
        now = self._clock()
        expired = [k for k, deadline in self._deadlines.items() if deadline <= now]
        for key in expired:
            log.info("replica stopped heartbeating; dropped", extra={"key": key})
            self.remove(key)
        return expired

    def next_deadline(self) -> float | None:
        """Monotonic time of the earliest deadline, if any record expires."""
        return min(self._deadlines.values(), default=None)

    async def wait_changed(self, seen: int, timeout_s: float | None = None) -> int:
        """Wait until :attr:`version` differs from ``seen`` (or the timeout); return the version."""
        while self._version == seen:
            event = self._event
            try:
                async with asyncio.timeout(timeout_s):
                    await event.wait()
            except TimeoutError:
                break
        return self._version

    def _changed(self) -> None:
        self._version += 1
        event, self._event = self._event, asyncio.Event()
        event.set()


class RegistryView:
    """Follows the ``REGISTRY`` bucket into a :class:`ReplicaTable`, sweeping expired replicas.

    Args:
        nc: a NATS connection that reconnects by itself.
        table: where the live replicas go (a new one by default).
        sweep_interval_s: how often the TTL sweep runs at most; a record is dropped within
            this of its deadline.
        idle_rewatch_s: a watch that delivered nothing for this long is opened again.
    """

    def __init__(
        self,
        nc: Client,
        table: ReplicaTable | None = None,
        *,
        sweep_interval_s: float = 0.1,
        idle_rewatch_s: float = 5.0,
    ) -> None:
        self.table = table or ReplicaTable()
        self._nc = nc
        self._sweep_interval_s = sweep_interval_s
        self._idle_rewatch_s = idle_rewatch_s
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Follow the bucket and sweep in the background until :meth:`close`."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._follow(), name="registry-follow"),
                asyncio.create_task(self._sweep(), name="registry-sweep"),
            ]

    async def close(self) -> None:
        """Stop following."""
        await cancel_and_wait(self._tasks)
        self._tasks = []

    def apply(self, key: str, value: bytes | None, operation: str | None) -> None:
        """Apply one watched entry: a put, or a delete/purge marker."""
        if operation is not None or not value:
            self.table.remove(key)
            return
        record = parse_record(value)
        if record is None:
            return
        if record.key != key:
            log.warning("registry record under another key; ignored", extra={"key": key})
            return
        self.table.put(record)

    async def _follow(self) -> None:
        while True:
            try:
                js = self._nc.jetstream()
                await ensure_kv(js, bucket_config())
                kv = await js.key_value(BUCKET)
                watcher = await kv.watchall()
                try:
                    while True:
                        # Live replicas write every second: a watch silent for this long has
                        # lost its server (a NATS restart); watching again re-reads every key.
                        try:
                            entry = await watcher.updates(timeout=self._idle_rewatch_s)  # type: ignore[no-untyped-call]
                        except NatsTimeoutError:
                            break
                        if entry is None:  # the current entries are all in
                            self.table.mark_ready()
                            continue
                        if isinstance(entry, KeyValue.Entry):
                            self.apply(entry.key, entry.value, entry.operation)
                        else:  # the watcher was stopped
                            break
                finally:
                    with contextlib.suppress(Exception):
                        await watcher.stop()  # type: ignore[no-untyped-call]
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - NATS down or restarting: keep what we have, retry
                log.warning("registry unreachable; retrying", extra={"reason": str(exc) or type(exc).__name__})
            await asyncio.sleep(_RETRY_S)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval_s)
            self.table.sweep()
