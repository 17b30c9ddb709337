"""Files uploaded for jobs (UploadSource): kept under the import root, each user's apart.

An upload lives at ``<import_root>/.uploads/<owner>/<upload id>/<file name>``. A job names it
by id only, and the id is looked up under the caller's own folder, so one user can never
read another's upload; ``source.path`` cannot reach it either (no path segment may start with
'.'). The workers read it like any file under the import root. It is removed when the job
reading it ends (:meth:`Uploads.remove`), or after ``retention_s`` if no job ever does.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from services.ingest.errors import SourceNotFound
from services.runtime.errors import InvalidArgument, ResourceExhausted

UPLOADS = ".uploads"


@dataclass(frozen=True)
class Upload:
    """A stored upload."""

    upload_id: str
    size_bytes: int
    sha256: str


def upload_dir(import_root: Path, owner: str, upload_id: str) -> Path:
    """The folder of one upload."""
    return import_root / UPLOADS / owner / upload_id


class Uploads:
    """Receives, finds and removes uploads."""

    def __init__(self, import_root: Path, max_bytes: int, retention_s: float) -> None:
        self._root = import_root
        self._max_bytes = max_bytes
        self._retention_s = retention_s

    async def receive(self, owner: str, parts: AsyncIterator[tuple[str, bytes]]) -> Upload:
        """Store the file whose (file name, chunk) parts arrive in order: the name first, then bytes.

        Raises:
            InvalidArgument: the first part is no file name, or a later one is.
            ResourceExhausted: the file grows past ``max_upload_bytes`` (nothing is kept).
        """
        upload_id = str(uuid.uuid4())
        folder = upload_dir(self._root, owner, upload_id)
        digest = hashlib.sha256()
        size = 0
        handle = None
        try:
            async for name, chunk in parts:
                if handle is None:
                    if not name:
                        raise InvalidArgument("file_name", "the first message must name the file")
                    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
                    handle = await asyncio.to_thread(open, folder / name, "wb")
                    continue
                if name:
                    raise InvalidArgument("file_name", "only the first message names the file")
                size += len(chunk)
                if size > self._max_bytes:
                    raise ResourceExhausted(f"the file is larger than this server takes ({self._max_bytes} bytes)")
                digest.update(chunk)
                await asyncio.to_thread(handle.write, chunk)
            if handle is None:
                raise InvalidArgument("file_name", "the first message must name the file")
        except BaseException:
            if handle is not None:
                handle.close()
            await asyncio.to_thread(shutil.rmtree, folder, True)
            raise
        await asyncio.to_thread(handle.close)
        return Upload(upload_id, size, digest.hexdigest())

    def path(self, owner: str, upload_id: str) -> str:
        """The upload's file, relative to the import root (SourceNotFound for another user's or a gone one)."""
        folder = upload_dir(self._root, owner, upload_id)
        files = [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
        if not files:
            raise SourceNotFound(f"source.upload_id: no upload {upload_id} of yours")
        return str(files[0].relative_to(self._root))

    def remove(self, owner: str, upload_id: str) -> None:
        """Delete one upload."""
        shutil.rmtree(upload_dir(self._root, owner, upload_id), ignore_errors=True)

    async def sweep(self, now: float | None = None) -> int:
        """Delete uploads older than the retention; returns how many."""
        cutoff = (time.time() if now is None else now) - self._retention_s

        def run() -> int:
            removed = 0
            base = self._root / UPLOADS
            for folder in base.glob("*/*") if base.is_dir() else ():
                if folder.is_dir() and folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
                    removed += 1
            return removed

        return await asyncio.to_thread(run)
