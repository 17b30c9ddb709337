"""Records as JSON in a JetStream KV bucket: get, create, compare-and-set updates, prefix lists.

Keys are ``<owner>.<id>``: a caller's records are found under their own user id only, so
another user's id or name simply does not exist for them (NOT_FOUND, nothing leaked).
Every failure to reach NATS is :class:`~services.runtime.errors.Unavailable`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Generic, TypeVar

from nats.js import JetStreamContext
from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel

from services.runtime.errors import Unavailable

log = logging.getLogger("chatmesh.ingest.kv")

R = TypeVar("R", bound=BaseModel)

_CAS_ATTEMPTS = 64


class RecordExists(Exception):
    """``create`` found the key taken."""


class KvTable(Generic[R]):
    """One bucket of records of type ``R``."""

    def __init__(self, kv: KeyValue, model: type[R], js: JetStreamContext | None = None, bucket: str = "") -> None:
        self._js = js
        self._bucket = bucket
        self._kv = kv
        self._model = model

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str, model: type[R]) -> KvTable[R]:
        """The bucket (declared at start by the service)."""
        return cls(await js.key_value(bucket), model, js, bucket)

    async def get(self, key: str) -> R | None:
        """The record at ``key``, or None."""
        found = await self._entry(key)
        return found[0] if found else None

    async def _entry(self, key: str) -> tuple[R, int] | None:
        try:
            entry = await self._kv.get(key)
        except (KeyNotFoundError, KeyDeletedError):
            return None
        except Exception as exc:  # nats-py raises timeouts and connection errors of several types
            raise Unavailable("the job and collection records (NATS) are unavailable; retry") from exc
        if entry.value is None or entry.operation is not None:
            return None
        return self._model.model_validate_json(entry.value), int(entry.revision or 0)

    async def create(self, key: str, record: R) -> None:
        """Store ``record`` at ``key`` unless something is there (RecordExists)."""
        try:
            await self._kv.create(key, record.model_dump_json().encode())
        except KeyWrongLastSequenceError:
            raise RecordExists(key) from None
        except Exception as exc:
            raise Unavailable("the job and collection records (NATS) are unavailable; retry") from exc

    async def put(self, key: str, record: R) -> None:
        """Store ``record`` at ``key`` whatever was there."""
        try:
            await self._kv.put(key, record.model_dump_json().encode())
        except Exception as exc:
            raise Unavailable("the job and collection records (NATS) are unavailable; retry") from exc

    async def update(self, key: str, change: Callable[[R], R | None]) -> R | None:
        """Apply ``change`` to the record at ``key`` atomically (compare-and-set, retried on races).

        ``change`` gets a copy of the current record and returns the new one, or None to leave
        it as it is. Returns the record as stored afterwards (None when there is none).
        """
        for _ in range(_CAS_ATTEMPTS):
            found = await self._entry(key)
            if found is None:
                return None
            current, revision = found
            new = change(current.model_copy(deep=True))
            if new is None:
                return current
            try:
                await self._kv.update(key, new.model_dump_json().encode(), last=revision)
            except KeyWrongLastSequenceError:
                continue
            except Exception as exc:
                raise Unavailable("the job and collection records (NATS) are unavailable; retry") from exc
            return new
        raise Unavailable(f"record {key} is changing too fast; retry")

    async def delete(self, key: str) -> None:
        """Remove ``key`` (no error if it is gone)."""
        try:
            await self._kv.delete(key)
        except (KeyNotFoundError, KeyDeletedError):
            return
        except Exception as exc:
            raise Unavailable("the job and collection records (NATS) are unavailable; retry") from exc

    async def list(self, prefix: str) -> list[R]:
        """Every record whose key starts with ``<prefix>.`` (``prefix`` "" for all), in key order.

        The keys come from the bucket's stream (its subjects, in one STREAM.INFO), then each
        record is read. A KV watch would be one round trip, but it skips a key that is being
        written while the watch starts (its old revision is gone before delivery, the new one
        arrives after the watch counted no more pending), and a listing must not lose a
        collection because its point count just changed.
        """
        pattern = f"{prefix}.>" if prefix else ">"
        subject_prefix = f"$KV.{self._bucket}."
        try:
            if self._js is None:
                raise RuntimeError("KvTable.list needs the JetStream context (KvTable.open)")
            info = await self._js.stream_info(f"KV_{self._bucket}", subjects_filter=subject_prefix + pattern)
        except Exception as exc:
            raise Unavailable("the job and collection records (NATS) are unavailable; retry") from exc
        keys = sorted(subject[len(subject_prefix) :] for subject in (info.state.subjects or {}))
        entries = await asyncio.gather(*(self._entry(key) for key in keys))
        return [entry[0] for entry in entries if entry is not None]

    async def watch(self, key: str, idle_s: float) -> AsyncGenerator[R | None, None]:
        """The record at ``key`` each time it changes (the current one first); None when deleted.

        Yields the last known record again after ``idle_s`` without a change (a keep-alive).
        """
        try:
            watcher = await self._kv.watch(key)
        except Exception as exc:
            raise Unavailable("the job and collection records (NATS) are unavailable; retry") from exc
        last: R | None = None
        try:
            while True:
                try:
                    entry = await watcher.updates(timeout=idle_s)  # type: ignore[no-untyped-call]
                except TimeoutError:
                    yield last
                    continue
                if entry is None:
                    continue
                if entry.operation is not None or not entry.value:
                    yield None
                    continue
                last = self._model.model_validate_json(entry.value)
                yield last
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
