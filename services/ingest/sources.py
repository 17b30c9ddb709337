"""Job sources: finding the file, cutting it into work items, and reading one item's points.

Formats (:class:`SourceFormat` in the contract): JSONL (a point or a document a line), CSV
(header row; ``vector`` or ``text``, optional ``id``, the rest payload), Parquet (the same
columns) and TEXT (plain text, split into passages). Positions are 1-based: the line of a
JSONL file, the data row of a CSV or Parquet file, the passage of a text file.

A JSONL item is a byte range of whole lines, so a worker reads only its part. CSV and Parquet
items are row ranges. A text file is split into passages when planned, and its items carry
their passages (as inline documents do). Blocking file work runs in threads.

Nothing is read outside the import root (PERMISSION_DENIED), and an S3 object is downloaded
once per job into the worker's cache directory.
"""

from __future__ import annotations

import asyncio
import csv
import json
import mmap
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from services.ingest.errors import OutsideRoot, SourceNotFound
from services.ingest.points import DocumentInput, Passage, PointInput, derived_id, passages_of
from services.ingest.records import SourceFormatName, SourceRecord
from services.runtime.errors import InvalidArgument, NotFound
from services.runtime.objectstore import ObjectStore

_SUFFIXES: dict[str, SourceFormatName] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".txt": "text",
    ".text": "text",
    ".md": "text",
}
# A passage item's texts stay well under NATS' 1 MiB message limit.
_PASSAGE_ITEM_BYTES = 512 * 1024
csv.field_size_limit(16 * 1024 * 1024)


def source_format(name: str, explicit: SourceFormatName) -> SourceFormatName:
    """The format of the file called ``name`` (``explicit`` when set)."""
    if explicit:
        return explicit
    fmt = _SUFFIXES.get(Path(name).suffix.lower())
    if fmt is None:
        raise InvalidArgument(
            "source.format", f"cannot tell the format of {Path(name).name!r}: name it (JSONL, CSV, PARQUET, TEXT)"
        )
    return fmt


def import_path(root: Path, relative: str) -> Path:
    """``relative`` under ``root``, resolved; OutsideRoot if it leaves it, SourceNotFound if it is missing."""
    base = root.resolve()
    path = (base / relative).resolve()
    if path != base and base not in path.parents:
        raise OutsideRoot("source.path: outside the server's import directory")
    if not path.is_file():
        raise SourceNotFound(f"source.path: no file {relative!r} in the server's import directory")
    return path


@dataclass(frozen=True)
class ItemPlan:
    """One work item: a byte range (JSONL), a row range (CSV, Parquet), or passages (TEXT)."""

    index: int
    first_position: int
    count: int
    start: int = 0
    end: int = 0
    passages: Sequence[Passage] = ()


@dataclass(frozen=True)
class Plan:
    """A source cut into items, and how many points it holds."""

    items: list[ItemPlan]
    points: int


@dataclass
class Parsed:
    """One source item read: a point, a document, or why it could not be used."""

    position: int
    point: PointInput | None = None
    document: DocumentInput | None = None
    problem: str = ""
    passages: list[Passage] = field(default_factory=list)


# -- planning -----------------------------------------------------------------------------


def plan_jsonl(path: Path, per_item: int) -> Plan:
    """Byte ranges of ``per_item`` non-empty lines each."""
    items: list[ItemPlan] = []
    size = path.stat().st_size
    if size == 0:
        return Plan([], 0)
    total = 0
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        offset = 0
        line = 0
        item_start, item_first, item_count = 0, 1, 0
        while offset < size:
            newline = data.find(b"\n", offset)
            end = size if newline < 0 else newline + 1
            line += 1
            if data[offset:end].strip():
                if item_count == 0:
                    item_start, item_first = offset, line
                item_count += 1
                total += 1
                if item_count == per_item:
                    items.append(ItemPlan(len(items), item_first, item_count, item_start, end))
                    item_count = 0
            offset = end
        if item_count:
            items.append(ItemPlan(len(items), item_first, item_count, item_start, size))
    return Plan(items, total)


def _csv_rows(path: Path) -> Iterator[dict[str, str]]:
    with open(path, newline="", encoding="utf-8", errors="strict") as f:
        yield from csv.DictReader(f)


def plan_rows(count: int, per_item: int) -> Plan:
    """Row ranges of ``per_item`` rows each, over ``count`` rows."""
    items = [
        ItemPlan(i, start + 1, min(per_item, count - start), start, min(start + per_item, count))
        for i, start in enumerate(range(0, count, per_item))
    ]
    return Plan(items, count)


def plan_csv(path: Path, per_item: int) -> Plan:
    """Row ranges of a CSV file (its header row is not a point)."""
    try:
        count = sum(1 for _ in _csv_rows(path))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise MalformedSource(f"not a UTF-8 CSV file: {exc}") from None
    return plan_rows(count, per_item)


def plan_parquet(path: Path, per_item: int) -> Plan:
    """Row ranges of a Parquet file."""
    try:
        count = pq.ParquetFile(path).metadata.num_rows
    except Exception as exc:  # pyarrow raises ArrowInvalid and OSError for a file that is not Parquet
        raise MalformedSource(f"not a Parquet file ({type(exc).__name__})") from None
    return plan_rows(count, per_item)


def plan_text(path: Path, label: str, source_uri: str, per_item: int, max_chars: int, overlap: int) -> Plan:
    """The passages of a text file, ``per_item`` (or fewer, for size) an item."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedSource(f"not UTF-8 text (byte {exc.start})") from None
    doc = DocumentInput(derived_id(source_uri, 0), text, {"source": label}, 0)
    passages = [
        Passage(derived_id(source_uri, i + 1), p.text, {**p.payload, "passage": i + 1})
        for i, p in enumerate(passages_of(doc, max_chars, overlap))
    ]
    for p in passages:
        p.payload.pop("document_id", None)
    return passage_plan(passages, per_item)


def passage_plan(passages: Sequence[Passage], per_item: int, first_position: int = 1) -> Plan:
    """Items of at most ``per_item`` passages and about 512 KiB of text each."""
    items: list[ItemPlan] = []
    current: list[Passage] = []
    size = 0
    first = first_position
    for i, passage in enumerate(passages):
        if current and (len(current) == per_item or size + len(passage.text) > _PASSAGE_ITEM_BYTES):
            items.append(ItemPlan(len(items), first, len(current), passages=current))
            current, size, first = [], 0, first_position + i
        current.append(passage)
        size += len(passage.text.encode())
    if current:
        items.append(ItemPlan(len(items), first, len(current), passages=current))
    return Plan(items, len(passages))


class MalformedSource(Exception):
    """The file as a whole cannot be read in its format (the job fails, saying why)."""


# -- reading one item ---------------------------------------------------------------------


def _id_of(value: Any) -> int | str | None:
    """A point id from JSON: {"uuid": ...}, {"num": ...}, an unsigned integer or a UUID string."""
    if isinstance(value, dict):
        value = value.get("uuid", value.get("num"))
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str):
        if value.isascii() and value.isdigit():  # str.isdigit alone takes "²", which int() refuses
            return int(value)
        return str(uuid.UUID(value))
    raise ValueError("id must be an unsigned integer or a UUID")


def _item_of(obj: Any, position: int, source_uri: str, raw_size: int, with_id: Any = None) -> Parsed:
    if not isinstance(obj, dict):
        return Parsed(position, problem="not a JSON object")
    try:
        given = _id_of(obj.get("id") if with_id is None else with_id)
    except ValueError as exc:
        return Parsed(position, problem=f"id: {exc}")
    pid = given if given is not None else derived_id(source_uri, position)
    if "vector" in obj:
        vector = obj["vector"]
        if not isinstance(vector, list) or not all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in vector
        ):
            return Parsed(position, problem="vector: not an array of numbers")
        payload = obj.get("payload") or {}
        if not isinstance(payload, dict):
            return Parsed(position, problem="payload: not a JSON object")
        size = raw_size if raw_size < 1024 else len(json.dumps(payload, separators=(",", ":")))
        return Parsed(position, point=PointInput(pid, [float(x) for x in vector], payload, size))
    if "text" in obj:
        text = obj["text"]
        if not isinstance(text, str) or not text.strip():
            return Parsed(position, problem="text: not a non-empty string")
        metadata = obj.get("metadata") or {}
        if not isinstance(metadata, dict):
            return Parsed(position, problem="metadata: not a JSON object")
        size = len(json.dumps(metadata, separators=(",", ":"))) if metadata else 0
        return Parsed(position, document=DocumentInput(pid, text, metadata, size))
    return Parsed(position, problem='neither "vector" nor "text"')


def read_jsonl(path: Path, item: ItemPlan, source_uri: str) -> list[Parsed]:
    """The items of one JSONL byte range."""
    with open(path, "rb") as f:
        f.seek(item.start)
        data = f.read(item.end - item.start)
    out: list[Parsed] = []
    for number, raw in enumerate(data.split(b"\n"), start=item.first_position):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            out.append(Parsed(number, problem=f"not JSON ({exc.msg} at column {exc.colno})"))
            continue
        except ValueError:
            out.append(Parsed(number, problem="not JSON (not UTF-8)"))
            continue
        out.append(_item_of(obj, number, source_uri, len(raw)))
    return out


def _row_item(row: dict[str, Any], position: int, source_uri: str, from_csv: bool) -> Parsed:
    obj: dict[str, Any] = {}
    extra = {k: v for k, v in row.items() if k not in ("id", "vector", "text") and k is not None}
    if row.get("vector") not in (None, ""):
        vector = row["vector"]
        if from_csv:
            try:
                vector = json.loads(vector)
            except ValueError:
                return Parsed(position, problem="vector: not a JSON array")
        obj["vector"] = list(vector) if not isinstance(vector, list) else vector
        obj["payload"] = extra
    elif row.get("text") not in (None, ""):
        obj["text"] = row["text"]
        obj["metadata"] = extra
    raw_id = row.get("id")
    return _item_of(obj, position, source_uri, 0, with_id=raw_id if raw_id not in (None, "") else None)


def read_csv(path: Path, item: ItemPlan, source_uri: str) -> list[Parsed]:
    """The rows of one CSV row range."""
    out: list[Parsed] = []
    for number, row in enumerate(_csv_rows(path), start=1):
        if number < item.first_position:
            continue
        if number >= item.first_position + item.count:
            break
        out.append(_row_item(row, number, source_uri, from_csv=True))
    return out


def read_parquet(path: Path, item: ItemPlan, source_uri: str) -> list[Parsed]:
    """The rows of one Parquet row range."""
    table = pq.ParquetFile(path).read().slice(item.start, item.count)
    rows = table.to_pylist()
    return [_row_item(row, item.first_position + i, source_uri, from_csv=False) for i, row in enumerate(rows)]


def read_item(path: Path, fmt: SourceFormatName, item: ItemPlan, source_uri: str) -> list[Parsed]:
    """The items of one work item of a file source, in order."""
    if fmt == "jsonl":
        return read_jsonl(path, item, source_uri)
    if fmt == "csv":
        return read_csv(path, item, source_uri)
    if fmt == "parquet":
        return read_parquet(path, item, source_uri)
    raise ValueError(f"format {fmt} items carry their passages")


# -- where the file is --------------------------------------------------------------------


class SourceFiles:
    """Local paths of job sources: under the import root, or downloaded from S3 into a cache."""

    def __init__(self, import_root: Path, cache_dir: Path, objects: ObjectStore) -> None:
        self._root = import_root
        self._cache = cache_dir
        self._objects = objects
        self._locks: dict[str, asyncio.Lock] = {}

    async def check(self, source: SourceRecord) -> None:
        """Raise unless the source exists and may be read (StartJob's check)."""
        if source.kind == "path":
            import_path(self._root, source.path)
        elif source.kind == "s3":
            bucket = self._objects.bucket(source.endpoint, source.bucket)
            try:
                await bucket.head(source.key)
            except NotFound as exc:
                raise SourceNotFound(f"source.s3.key: {exc}") from None

    async def local(self, job_id: str, source: SourceRecord) -> Path:
        """A local file with the source's bytes (downloaded once per job for S3)."""
        if source.kind == "path":
            return import_path(self._root, source.path)
        target = self._cache / f"{job_id}.source"
        lock = self._locks.setdefault(job_id, asyncio.Lock())
        async with lock:
            if not target.is_file():
                self._cache.mkdir(parents=True, exist_ok=True)
                partial = target.with_suffix(".part")
                bucket = self._objects.bucket(source.endpoint, source.bucket)
                await bucket.get_file(source.key, partial)
                os.replace(partial, target)
        return target

    def forget(self, job_id: str) -> None:
        """Drop a job's cached download."""
        (self._cache / f"{job_id}.source").unlink(missing_ok=True)
        self._locks.pop(job_id, None)
