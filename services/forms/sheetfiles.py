"""Where the sheets consumer keeps a form's rows and spreadsheets: a local directory or an S3 bucket.

Per form (``<form_id>/``): ``parts/<name>.jsonl``, one immutable file per committed batch
(its rows, each with its submission id: the batch commit records which submissions it
holds; merged parts, ``merged<level>-...``, hold the rows of the parts they replaced), and
the rendered spreadsheets (``sheet.xlsx``, ``sheet.csv``, then ``sheet-2...``
past the row limit). Every write replaces a whole file at once: a local file is written
aside, fsynced and renamed; an S3 object is one PUT. No gRPC here.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Protocol

from services.runtime.errors import NotFound
from services.runtime.objectstore import Bucket


class SheetFiles(Protocol):
    """The storage of the sheets consumer."""

    def describe(self, form_id: str, filename: str) -> str:
        """Where a file of a form lives (a path or an s3:// URL), for people."""
        ...

    async def list_parts(self, form_id: str) -> list[str]:
        """The names of a form's committed parts."""
        ...

    async def read_part(self, form_id: str, name: str) -> bytes:
        """One part's bytes."""
        ...

    async def write_part(self, form_id: str, name: str, data: bytes) -> None:
        """Commit one part (all of it or nothing)."""
        ...

    async def delete_part(self, form_id: str, name: str) -> None:
        """Delete one part (merged into another); no error if it is gone already."""
        ...

    async def write_file(self, form_id: str, filename: str, data: bytes) -> None:
        """Replace one rendered spreadsheet."""
        ...

    async def read_file(self, form_id: str, filename: str) -> bytes:
        """One rendered spreadsheet's bytes (NotFound if there is none)."""
        ...


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself survives a power cut
    finally:
        os.close(fd)


class LocalSheetFiles:
    """A form's files under ``root/<form_id>/``."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def _form(self, form_id: str) -> Path:
        return self._root / form_id

    def describe(self, form_id: str, filename: str) -> str:
        return str(self._form(form_id) / filename)

    async def list_parts(self, form_id: str) -> list[str]:
        def names() -> list[str]:
            folder = self._form(form_id) / "parts"
            if not folder.is_dir():
                return []
            return sorted(p.name for p in folder.iterdir() if p.suffix == ".jsonl" and not p.name.startswith("."))

        return await asyncio.to_thread(names)

    async def read_part(self, form_id: str, name: str) -> bytes:
        return await asyncio.to_thread((self._form(form_id) / "parts" / name).read_bytes)

    async def write_part(self, form_id: str, name: str, data: bytes) -> None:
        await asyncio.to_thread(_write_atomically, self._form(form_id) / "parts" / name, data)

    async def delete_part(self, form_id: str, name: str) -> None:
        await asyncio.to_thread((self._form(form_id) / "parts" / name).unlink, missing_ok=True)

    async def write_file(self, form_id: str, filename: str, data: bytes) -> None:
        await asyncio.to_thread(_write_atomically, self._form(form_id) / filename, data)

    async def read_file(self, form_id: str, filename: str) -> bytes:
        path = self._form(form_id) / filename
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise NotFound(f"no sheet {filename} for form {form_id}") from None


class S3SheetFiles:
    """A form's files under ``<prefix><form_id>/`` in one bucket."""

    def __init__(self, bucket: Bucket, prefix: str) -> None:
        self._bucket = bucket
        self._prefix = prefix

    def _key(self, form_id: str, name: str) -> str:
        return f"{self._prefix}{form_id}/{name}"

    def describe(self, form_id: str, filename: str) -> str:
        return f"s3://{self._bucket.name}/{self._key(form_id, filename)}"

    async def list_parts(self, form_id: str) -> list[str]:
        prefix = self._key(form_id, "parts/")
        objects = await self._bucket.list(prefix)
        return sorted(o.key[len(prefix) :] for o in objects if o.key.endswith(".jsonl"))

    async def read_part(self, form_id: str, name: str) -> bytes:
        return await self._bucket.get_bytes(self._key(form_id, f"parts/{name}"))

    async def write_part(self, form_id: str, name: str, data: bytes) -> None:
        await self._bucket.put_bytes(self._key(form_id, f"parts/{name}"), data, "application/x-ndjson")

    async def delete_part(self, form_id: str, name: str) -> None:
        await self._bucket.delete(self._key(form_id, f"parts/{name}"))

    async def write_file(self, form_id: str, filename: str, data: bytes) -> None:
        content_type = (
            "text/csv"
            if filename.endswith(".csv")
            else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        )
        await self._bucket.put_bytes(self._key(form_id, filename), data, content_type)

    async def read_file(self, form_id: str, filename: str) -> bytes:
        return await self._bucket.get_bytes(self._key(form_id, filename))
