"""The presence KV bucket: device records and replica registrations, shared by replicas.

Keys: ``<user_id>.<device_id>`` hold a device's latest record (JSON, tens of bytes);
``replicas.<replica_id>`` hold a replica's last registration time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from nats.js import JetStreamContext

from services.presence.folder import DeviceRecord
from services.presence.streams import presence_bucket
from services.presence.tracker import BucketEntry, ReplayDone, ReplicaSeen
from services.runtime.bus import ensure_kv
from services.runtime.errors import Unavailable

log = logging.getLogger("chatmesh.presence.bucket")

REPLICAS = "replicas"
_DELETES = ("DEL", "PURGE")


def encode_record(record: DeviceRecord) -> bytes:
    """The stored value of a device record (ids live in the key)."""
    value: dict[str, Any] = {"s": record.seen_at, "a": record.active, "c": record.connected}
    if record.active_at is not None:
        value["aa"] = record.active_at
    return json.dumps(value, separators=(",", ":")).encode()


def decode_record(key: str, value: bytes) -> DeviceRecord:
    """A device record from its key and stored value (ValueError if malformed)."""
    user_id, _, device_id = key.partition(".")
    if not user_id or not device_id:
        raise ValueError(f"not a device key: {key}")
    data = json.loads(value)
    active_at = data.get("aa")
    return DeviceRecord(
        user_id=user_id,
        device_id=device_id,
        seen_at=float(data["s"]),
        active=bool(data["a"]),
        active_at=None if active_at is None else float(active_at),
        connected=bool(data["c"]),
    )


class PresenceBucket:
    """Reads and writes of the presence bucket (implements tracker.DeviceBucketPort)."""

    def __init__(self, kv: Any) -> None:
        self._kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext, name: str) -> PresenceBucket:
        """Declare the bucket if missing and open it."""
        try:
            await ensure_kv(js, presence_bucket(name))
            return cls(await js.key_value(name))
        except Exception as exc:  # nats raises several unrelated types for "cannot"
            raise Unavailable(f"KV bucket {name} unavailable: {exc}") from exc

    async def put_device(self, record: DeviceRecord) -> None:
        """Store the device's record, waiting for the JetStream ack."""
        try:
            await self._kv.put(f"{record.user_id}.{record.device_id}", encode_record(record))
        except Exception as exc:  # timeouts, no responders, closed connection
            raise Unavailable("presence bucket unavailable; retry") from exc

    async def put_replica(self, replica_id: str, seen_at: float) -> None:
        """Register a replica as live at ``seen_at``."""
        try:
            await self._kv.put(f"{REPLICAS}.{replica_id}", json.dumps({"s": seen_at}).encode())
        except Exception as exc:  # timeouts, no responders, closed connection
            raise Unavailable("presence bucket unavailable: replica not registered") from exc

    async def remove_replica(self, replica_id: str) -> None:
        """Deregister a replica."""
        try:
            await self._kv.delete(f"{REPLICAS}.{replica_id}")
        except Exception as exc:  # as above
            raise Unavailable("presence bucket unavailable: replica not deregistered") from exc

    async def follow(self) -> AsyncIterator[BucketEntry]:
        """Every current entry, then ReplayDone, then every change, until cancelled."""
        watcher = await self._kv.watchall()
        try:
            async for entry in watcher:
                if entry is None:  # the watcher's "initial values delivered" marker
                    yield ReplayDone()
                    continue
                decoded = self._decode(entry)
                if decoded is not None:
                    yield decoded
        finally:
            try:
                await watcher.stop()
            except Exception:  # noqa: BLE001 - the connection may be gone already
                log.debug("watcher stop failed", exc_info=True)

    @staticmethod
    def _decode(entry: Any) -> BucketEntry | None:
        key = str(entry.key)
        deleted = entry.operation in _DELETES
        try:
            if key.startswith(f"{REPLICAS}."):
                replica_id = key[len(REPLICAS) + 1 :]
                return ReplicaSeen(replica_id, None if deleted else float(json.loads(entry.value)["s"]))
            if deleted:
                return None  # device entries are never deleted by presence; aged-out ones are swept
            return decode_record(key, entry.value)
        except (ValueError, KeyError, TypeError):
            log.warning("malformed presence entry skipped", extra={"key": key})
            return None
