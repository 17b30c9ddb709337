"""The snapshot file: a collection's points in one Parquet file, portable between backends.

Columns: ``id_num`` (uint64, null for UUID ids), ``id_uuid`` (string, null for integer ids),
``vector`` (list of float32) and ``payload`` (JSON text). The file's key-value metadata
``chatmesh.snapshot`` holds the format version and the collection's settings (vector size,
distance, embedding model, payload indexes) and its point count.

Why not Qdrant's own snapshots: Edge cannot write one, and on a cluster a collection
snapshot holds only the shards of the node that took it. This file is written from the
store's scroll API, restores into either backend and any cluster layout, and is checked
whole (its SHA-256, then every row read back) before a collection is replaced.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from services.ingest.errors import SnapshotCorrupt
from services.ingest.store.base import DistanceName, IndexKind, StoredPoint

FORMAT_VERSION = 1
META_KEY = b"chatmesh.snapshot"
SUFFIX = ".snapshot.parquet"
_SCHEMA = pa.schema(
    [
        ("id_num", pa.uint64()),
        ("id_uuid", pa.string()),
        ("vector", pa.list_(pa.float32())),
        ("payload", pa.string()),
    ]
)


@dataclass(frozen=True)
class SnapshotHeader:
    """What a snapshot file says about itself."""

    collection: str
    vector_size: int
    distance: DistanceName
    embedding_model: str
    payload_indexes: list[tuple[str, IndexKind]]
    points_count: int


class SnapshotWriter:
    """Writes points into a snapshot file, page by page (blocking: call from a thread)."""

    def __init__(self, path: Path, header: SnapshotHeader) -> None:
        meta = {
            "format": FORMAT_VERSION,
            "collection": header.collection,
            "vector_size": header.vector_size,
            "distance": header.distance,
            "embedding_model": header.embedding_model,
            "payload_indexes": header.payload_indexes,
        }
        self._meta = meta
        self._path = path
        self._count = 0
        # The point count is known only at the end: it goes in the footer metadata then.
        self._writer = pq.ParquetWriter(str(path), _SCHEMA.with_metadata({META_KEY: json.dumps(meta)}))

    def write(self, points: list[StoredPoint]) -> None:
        """Append a page of points."""
        if not points:
            return
        table = pa.table(
            {
                "id_num": [p.id if isinstance(p.id, int) else None for p in points],
                "id_uuid": [p.id if isinstance(p.id, str) else None for p in points],
                "vector": [list(p.vector) for p in points],
                "payload": [json.dumps(dict(p.payload), separators=(",", ":")) for p in points],
            },
            schema=_SCHEMA,
        )
        self._writer.write_table(table)
        self._count += len(points)

    def close(self) -> int:
        """Finish the file; returns the points written."""
        self._writer.add_key_value_metadata({"chatmesh.points": str(self._count)})
        self._writer.close()
        return self._count


def sha256_of(path: Path) -> str:
    """The file's SHA-256 in lowercase hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_header(path: Path) -> SnapshotHeader:
    """The header of a snapshot file (SnapshotCorrupt when it is not one)."""
    try:
        meta = pq.ParquetFile(str(path)).metadata
        kv = meta.metadata or {}
        info: dict[str, Any] = json.loads(kv[META_KEY])
        count = int(kv[b"chatmesh.points"])
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise SnapshotCorrupt(f"the snapshot file is not a chatmesh snapshot ({type(exc).__name__})") from None
    if info.get("format") != FORMAT_VERSION or count != meta.num_rows:
        raise SnapshotCorrupt("the snapshot file is not a chatmesh snapshot of a version this server reads")
    return SnapshotHeader(
        collection=str(info["collection"]),
        vector_size=int(info["vector_size"]),
        distance=info["distance"],
        embedding_model=str(info.get("embedding_model", "")),
        payload_indexes=[(str(k), v) for k, v in info.get("payload_indexes", [])],
        points_count=count,
    )


def read_points(path: Path, page: int = 256) -> Iterator[list[StoredPoint]]:
    """The file's points, ``page`` at a time (SnapshotCorrupt for a row that cannot be read)."""
    try:
        parquet = pq.ParquetFile(str(path))
        for batch in parquet.iter_batches(batch_size=page):
            rows = batch.to_pydict()
            yield [
                StoredPoint(
                    num if num is not None else str(text),
                    vector,
                    json.loads(payload),
                )
                for num, text, vector, payload in zip(
                    rows["id_num"], rows["id_uuid"], rows["vector"], rows["payload"], strict=True
                )
            ]
    except SnapshotCorrupt:
        raise
    except Exception as exc:
        raise SnapshotCorrupt(f"the snapshot file cannot be read ({type(exc).__name__})") from None
