"""Snapshots: write a collection to a directory or an S3 bucket, list, restore, delete, schedule.

Writing: the collection is scrolled page by page into a snapshot file (see
:mod:`services.ingest.snapshot_files`) in a work directory, its SHA-256 taken, and the file
(with a ``.sha256`` sidecar an operator can check by hand) uploaded to the target; then the
snapshot's record is stored. Restoring: the file is downloaded, its SHA-256 compared with
the record's, its header checked and every point loaded into a *new* store collection; only
when all of that has worked does the caller's collection switch to it (the old one is then
deleted). A corrupted or truncated file is refused before the collection is touched.

Schedules: each collection may have one (interval, target, keep). The scheduler looks for
due collections every few seconds, claims each due snapshot with a compare-and-set on the
collection's record (so several replicas never take the same one), writes it, and deletes
that collection's scheduled snapshots beyond the newest ``keep``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from services.ingest.collections import Collections, CollectionView, spec_of
from services.ingest.errors import CollectionBusy, CollectionExists, OutsideRoot, SnapshotCorrupt, SnapshotNotFound
from services.ingest.kvtable import KvTable
from services.ingest.pages import Page, page_after
from services.ingest.records import CollectionRecord, ScheduleRecord, SnapshotRecord, TargetRecord, snapshot_key
from services.ingest.snapshot_files import SUFFIX, SnapshotHeader, SnapshotWriter, read_header, read_points, sha256_of
from services.runtime.errors import InvalidArgument, NotFound
from services.runtime.objectstore import ObjectStore

log = logging.getLogger("chatmesh.ingest.snapshots")

DEFAULT_PAGE = 50
_SCROLL_PAGE = 1024
_RESTORE_BATCH = 256


class SnapshotTargets:
    """Directories under the snapshot root, and S3 buckets the server has credentials for."""

    def __init__(self, root: Path, objects: ObjectStore) -> None:
        self._root = root
        self._objects = objects

    def directory(self, target: TargetRecord) -> Path:
        """The local directory of ``target`` (OutsideRoot if it leaves the root)."""
        base = self._root.resolve()
        path = (base / target.path).resolve() if target.path else base
        if path != base and base not in path.parents:
            raise OutsideRoot("target.local.path: outside the server's snapshot directory")
        return path

    @staticmethod
    def _key(target: TargetRecord, name: str) -> str:
        prefix = target.prefix
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return prefix + name

    def check(self, target: TargetRecord) -> None:
        """Raise PermissionDenied/OutsideRoot unless the server may write to ``target``."""
        if target.kind == "local":
            self.directory(target)
        else:
            self._objects.bucket(target.endpoint, target.bucket)

    async def put(self, target: TargetRecord, name: str, path: Path, sha256: str) -> None:
        """Store the file ``path`` as ``name`` at ``target`` (with its ``.sha256`` sidecar)."""
        sidecar = f"{sha256}  {name}\n".encode()
        if target.kind == "local":
            directory = self.directory(target)

            def copy() -> None:
                directory.mkdir(parents=True, exist_ok=True)
                partial = directory / f".{name}.part"
                with open(path, "rb") as src, open(partial, "wb") as dst:
                    while block := src.read(1 << 20):
                        dst.write(block)
                    dst.flush()
                    os.fsync(dst.fileno())
                os.replace(partial, directory / name)
                (directory / f"{name}.sha256").write_bytes(sidecar)

            await asyncio.to_thread(copy)
            return
        bucket = self._objects.bucket(target.endpoint, target.bucket)
        await bucket.ensure_exists()
        await bucket.put_file(self._key(target, name), path)
        await bucket.put_bytes(self._key(target, name) + ".sha256", sidecar, "text/plain")

    async def get(self, target: TargetRecord, name: str, dest: Path) -> None:
        """Fetch ``name`` from ``target`` into ``dest`` (SnapshotNotFound when it is gone)."""
        if target.kind == "local":
            source = self.directory(target) / name
            if not source.is_file():
                raise SnapshotNotFound(f"the snapshot file {name!r} is gone from its directory")
            await asyncio.to_thread(_copy_file, source, dest)
            return
        bucket = self._objects.bucket(target.endpoint, target.bucket)
        try:
            await bucket.get_file(self._key(target, name), dest)
        except NotFound:
            raise SnapshotNotFound(f"the snapshot file {name!r} is gone from bucket {target.bucket!r}") from None

    async def delete(self, target: TargetRecord, name: str) -> None:
        """Remove ``name`` and its sidecar from ``target``."""
        if target.kind == "local":
            directory = self.directory(target)
            for file in (directory / name, directory / f"{name}.sha256"):
                file.unlink(missing_ok=True)
            return
        bucket = self._objects.bucket(target.endpoint, target.bucket)
        await bucket.delete(self._key(target, name))
        await bucket.delete(self._key(target, name) + ".sha256")


def _copy_file(source: Path, dest: Path) -> None:
    with open(source, "rb") as src, open(dest, "wb") as dst:
        while block := src.read(1 << 20):
            dst.write(block)


def newest_first(record: SnapshotRecord) -> str:
    """Sort key: newest snapshot first, ties by id."""
    return f"{1e11 - record.created_at:020.6f}.{record.snapshot_id}"


class Snapshots:
    """Snapshots of users' collections."""

    def __init__(
        self,
        table: KvTable[SnapshotRecord],
        collections: Collections,
        targets: SnapshotTargets,
        work_dir: Path,
    ) -> None:
        self._table = table
        self._collections = collections
        self._targets = targets
        self._work_dir = work_dir
        self._busy: set[str] = set()
        self.scheduled_taken = 0
        """Scheduled snapshots this replica has taken since it started."""

    @contextlib.asynccontextmanager
    async def _work_file(self) -> AsyncIterator[Path]:
        self._work_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(suffix=SUFFIX, dir=self._work_dir)
        os.close(fd)
        path = Path(name)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    async def create(
        self, owner: str, collection: str, target: TargetRecord, scheduled: bool = False
    ) -> SnapshotRecord:
        """Write a snapshot of ``owner``'s ``collection`` to ``target``.

        Raises:
            CollectionNotFound, OutsideRoot / PermissionDenied (target not allowed),
            Unavailable (the target or the store failed).
        """
        record = await self._collections.get(owner, collection)
        self._targets.check(target)
        snapshot_id = str(uuid.uuid4())
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        file_name = f"{collection}-{stamp}-{snapshot_id[:8]}{SUFFIX}"
        async with self._work_file() as path:
            count = await self._write_file(record, path)
            sha256 = await asyncio.to_thread(sha256_of, path)
            size = path.stat().st_size
            await self._targets.put(target, file_name, path, sha256)
        snapshot = SnapshotRecord(
            snapshot_id=snapshot_id,
            owner=owner,
            collection=collection,
            target=target,
            file_name=file_name,
            size_bytes=size,
            points_count=count,
            vector_size=record.vector_size,
            distance=record.distance,
            embedding_model=record.embedding_model,
            payload_indexes=record.payload_indexes,
            created_at=now,
            sha256=sha256,
            scheduled=scheduled,
        )
        await self._table.create(snapshot.key, snapshot)
        return snapshot

    async def _write_file(self, record: CollectionRecord, path: Path) -> int:
        header = SnapshotHeader(
            record.name, record.vector_size, record.distance, record.embedding_model, record.payload_indexes, 0
        )
        writer = await asyncio.to_thread(SnapshotWriter, path, header)
        offset = None
        try:
            while True:
                page, offset = await self._collections.store.scroll(record.store_name, offset, _SCROLL_PAGE)
                await asyncio.to_thread(writer.write, page)
                if offset is None:
                    break
        finally:
            count = await asyncio.to_thread(writer.close)
        return count

    async def get(self, owner: str, snapshot_id: str) -> SnapshotRecord:
        """``owner``'s snapshot (SnapshotNotFound otherwise)."""
        found = await self._table.get(snapshot_key(owner, snapshot_id))
        if found is None:
            raise SnapshotNotFound(f"snapshot {snapshot_id} not found")
        return found

    async def page(self, owner: str, collection: str, page_size: int, page_token: str) -> Page[SnapshotRecord]:
        """``owner``'s snapshots, newest first (of ``collection`` only, when given)."""
        found = [s for s in await self._table.list(owner) if not collection or s.collection == collection]
        found.sort(key=newest_first)
        return page_after(found, newest_first, page_size or DEFAULT_PAGE, page_token)

    async def delete(self, owner: str, snapshot_id: str) -> None:
        """Delete ``owner``'s snapshot: its file, then its record."""
        snapshot = await self.get(owner, snapshot_id)
        await self._targets.delete(snapshot.target, snapshot.file_name)
        await self._table.delete(snapshot.key)

    async def restore(self, owner: str, snapshot_id: str, into: str, replace: bool) -> CollectionView:
        """Restore ``owner``'s snapshot into ``into`` (its own collection when empty).

        Raises:
            SnapshotNotFound (record or file), CollectionExists (``into`` exists and not
            ``replace``), CollectionBusy (a job writes into it), SnapshotCorrupt (checksum,
            format), PermissionDenied, Unavailable.
        """
        snapshot = await self.get(owner, snapshot_id)
        name = into or snapshot.collection
        existing = await self._collections.find(owner, name)
        if existing is not None and not replace:
            raise CollectionExists(name)
        if existing is not None and self._collections.active_job is not None:
            job_id = await self._collections.active_job(owner, name)
            if job_id:
                raise CollectionBusy(name, job_id)
        self._targets.check(snapshot.target)
        if name in self._busy:
            raise CollectionBusy(name, "(a restore)")
        self._busy.add(name)
        try:
            async with self._work_file() as path:
                await self._targets.get(snapshot.target, snapshot.file_name, path)
                actual = await asyncio.to_thread(sha256_of, path)
                if actual != snapshot.sha256:
                    raise SnapshotCorrupt(
                        f"snapshot {snapshot_id}: the file's SHA-256 is {actual[:12]}..., it was written as "
                        f"{snapshot.sha256[:12]}...: the file is damaged; nothing was changed"
                    )
                header = await asyncio.to_thread(read_header, path)
                if header.points_count != snapshot.points_count or header.vector_size != snapshot.vector_size:
                    raise SnapshotCorrupt(f"snapshot {snapshot_id}: the file does not hold what its record says")
                record = await self._load(owner, name, snapshot, existing, path)
        finally:
            self._busy.discard(name)
        old = await self._collections.replace_store(record)
        if old is not None and old.store_name != record.store_name:
            await self._collections.store.delete_collection(old.store_name)
        return await self._collections.view(record)

    async def _load(
        self, owner: str, name: str, snapshot: SnapshotRecord, existing: CollectionRecord | None, path: Path
    ) -> CollectionRecord:
        record = CollectionRecord(
            owner=owner,
            name=name,
            store_name=f"c{uuid.uuid4().hex}",
            vector_size=snapshot.vector_size,
            distance=snapshot.distance,
            embedding_model=snapshot.embedding_model,
            payload_indexes=snapshot.payload_indexes,
            created_at=existing.created_at if existing else time.time(),
            schedule=existing.schedule if existing else None,
            last_scheduled_at=existing.last_scheduled_at if existing else 0.0,
        )
        store = self._collections.store
        await store.create_collection(record.store_name, spec_of(record))
        try:
            await store.set_bulk_mode(record.store_name, True)
            pages = read_points(path, _RESTORE_BATCH)
            while True:
                page = await asyncio.to_thread(next, pages, None)
                if page is None:
                    break
                await store.upsert(record.store_name, page)
            await store.set_bulk_mode(record.store_name, False)
            if await store.count(record.store_name) != snapshot.points_count:
                raise SnapshotCorrupt(f"snapshot {snapshot.snapshot_id}: fewer points were read than it holds")
        except BaseException:
            await store.delete_collection(record.store_name)
            raise
        return record

    async def run_schedules(self, now: float) -> int:
        """Take every due scheduled snapshot and apply retention; returns how many were taken."""
        taken = 0
        for record in await self._collections.all_records():
            schedule = record.schedule
            if schedule is None or now - record.last_scheduled_at < schedule.interval_s:
                continue
            if not await self._collections.mark_scheduled(record, record.last_scheduled_at, now):
                continue
            try:
                await self.create(record.owner, record.name, schedule.target, scheduled=True)
                taken += 1
                self.scheduled_taken += 1
                await self._retain(record.owner, record.name, schedule.keep)
            except Exception:  # noqa: BLE001 - one collection's failure must not stop the others' schedules
                log.warning("scheduled snapshot failed", extra={"collection": record.name}, exc_info=True)
        return taken

    async def _retain(self, owner: str, collection: str, keep: int) -> None:
        scheduled = [s for s in await self._table.list(owner) if s.collection == collection and s.scheduled]
        scheduled.sort(key=newest_first)
        for old in scheduled[keep:]:
            try:
                await self.delete(owner, old.snapshot_id)
            except SnapshotNotFound:
                pass

    async def scheduler(self, tick_s: float) -> None:
        """Run :meth:`run_schedules` every ``tick_s`` until cancelled."""
        while True:
            await asyncio.sleep(tick_s)
            try:
                await self.run_schedules(time.time())
            except Exception:  # noqa: BLE001 - NATS briefly away: try again next tick
                log.warning("snapshot scheduler tick failed", exc_info=True)


def checked_schedule(
    schedule: ScheduleRecord | None, field: str, min_interval_s: int, targets: SnapshotTargets
) -> ScheduleRecord | None:
    """``schedule`` if its interval is allowed and its target writable (InvalidArgument, PermissionDenied)."""
    if schedule is None:
        return None
    if schedule.interval_s < min_interval_s:
        raise InvalidArgument(
            f"{field}.interval_seconds",
            f"is {schedule.interval_s}, the shortest this server allows is {min_interval_s}",
        )
    targets.check(schedule.target)
    return schedule
