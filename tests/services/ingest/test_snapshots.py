"""Snapshots to a real S3 API (S3Proxy) and to a directory, restores on both stores, checksums
checked before anything is replaced, and schedules with retention."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from chatmesh.ingest.v1 import ingest_pb2 as pb
from mesh.deps.nats import Nats
from mesh.deps.qdrant import Qdrant
from mesh.deps.s3proxy import S3Proxy
from services.runtime.objectstore import S3Settings
from services.runtime.server import ServiceServer
from tests.conftest_ingest import IngestHandle, MeshKeys, User, ingest_settings, new_user, running_ingest

DIM = 16
QUERIES = [7, 99, 512, 1500, 1999]


def vec(seed: int) -> list[float]:
    rng = random.Random(seed)
    v = [rng.uniform(-1, 1) for _ in range(DIM)]
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def query(seed: int) -> list[float]:
    rng = random.Random(10_000 + seed)
    return [x + rng.uniform(-0.3, 0.3) for x in vec(seed)]


@pytest.fixture(params=["embedded", "server"])
def store_url(request: pytest.FixtureRequest) -> str:
    """ "" for the embedded store; the run's Qdrant server's URL for the server store."""
    if request.param == "embedded":
        return ""
    server: Qdrant = request.getfixturevalue("qdrant_server")
    return server.url


@pytest.fixture
async def snap_ingest(
    nats_server: Nats,
    mesh_keys: MeshKeys,
    ingest_inference: ServiceServer,
    tmp_path: Path,
    s3: S3Settings,
    store_url: str,
) -> AsyncIterator[IngestHandle]:
    """An ingest service with S3 credentials for the run's S3Proxy, on each store in turn."""
    settings = ingest_settings(
        nats_server, mesh_keys, tmp_path, ingest_inference.port, s3=s3, qdrant_url=store_url,
        snapshot_min_interval_s=1, snapshot_scheduler_tick_s=0.2,
    )  # fmt: skip
    async with running_ingest(settings) as handle:
        yield handle


async def fill(ingest: IngestHandle, user: User, name: str = "movies", count: int = 2000) -> None:
    await ingest.stub.CreateCollection(
        pb.CreateCollectionRequest(
            name=name,
            vector_size=DIM,
            distance=pb.DISTANCE_COSINE,
            payload_indexes=[pb.PayloadIndex(key="genre", type=pb.PAYLOAD_INDEX_TYPE_KEYWORD)],
        ),
        metadata=user.metadata,
    )
    for start in range(0, count, 250):
        points = []
        for i in range(start, min(start + 250, count)):
            p = pb.Point(id=pb.PointId(num=i), vector=vec(i))
            p.payload.update({"title": f"movie {i}", "genre": ["drama", "comedy"][i % 2]})
            points.append(p)
        await ingest.stub.Upsert(pb.UpsertRequest(collection=name, points=points), metadata=user.metadata)


async def top10(ingest: IngestHandle, user: User, name: str = "movies") -> list[list[int]]:
    found = []
    for q in QUERIES:
        answer = await ingest.stub.Search(
            pb.SearchRequest(collection=name, vector=query(q), limit=10), metadata=user.metadata
        )
        found.append([p.id.num for p in answer.points])
    return found


async def count(ingest: IngestHandle, user: User, name: str = "movies") -> int:
    listed = await ingest.stub.ListCollections(pb.ListCollectionsRequest(), metadata=user.metadata)
    return next((c.points_count for c in listed.collections if c.name == name), -1)


async def code_of(call: object) -> tuple[grpc.StatusCode, str]:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    raise AssertionError("the call succeeded")


S3_TARGET = pb.SnapshotTarget(s3=pb.S3Bucket(bucket="snapshots", prefix="chatmesh/"))


async def test_snapshot_to_s3_delete_restore_gives_the_same_points_and_answers(
    snap_ingest: IngestHandle, mesh_keys: MeshKeys, s3_server: S3Proxy
) -> None:
    ingest = snap_ingest
    ann = new_user(mesh_keys)
    await fill(ingest, ann)
    before = await top10(ingest, ann)
    made = (
        await ingest.stub.CreateSnapshot(
            pb.CreateSnapshotRequest(collection="movies", target=S3_TARGET), metadata=ann.metadata
        )
    ).snapshot
    assert (made.points_count, made.vector_size, made.collection) == (2000, DIM, "movies")
    assert len(made.sha256) == 64 and made.size_bytes > 2000 * DIM * 4
    assert (s3_server.data_dir / "snapshots" / "chatmesh" / made.file_name).is_file()
    listed = await ingest.stub.ListSnapshots(pb.ListSnapshotsRequest(collection="movies"), metadata=ann.metadata)
    assert [s.snapshot_id for s in listed.snapshots] == [made.snapshot_id]
    await ingest.stub.DeleteCollection(pb.DeleteCollectionRequest(name="movies"), metadata=ann.metadata)
    assert await count(ingest, ann) == -1
    restored = await ingest.stub.RestoreSnapshot(
        pb.RestoreSnapshotRequest(snapshot_id=made.snapshot_id), metadata=ann.metadata
    )
    assert (restored.collection.name, restored.collection.points_count) == ("movies", 2000)
    assert restored.collection.payload_indexes[0].key == "genre"
    assert await top10(ingest, ann) == before
    # Into a new collection too; the existing one needs replace_existing.
    code, _ = await code_of(
        ingest.stub.RestoreSnapshot(pb.RestoreSnapshotRequest(snapshot_id=made.snapshot_id), metadata=ann.metadata)
    )
    assert code == grpc.StatusCode.ALREADY_EXISTS
    copy = await ingest.stub.RestoreSnapshot(
        pb.RestoreSnapshotRequest(snapshot_id=made.snapshot_id, collection="movies-copy"), metadata=ann.metadata
    )
    assert copy.collection.points_count == 2000
    assert await top10(ingest, ann, "movies-copy") == before


async def test_a_corrupted_snapshot_is_refused_before_the_collection_is_touched(
    snap_ingest: IngestHandle, mesh_keys: MeshKeys
) -> None:
    ingest = snap_ingest
    ann = new_user(mesh_keys)
    await fill(ingest, ann, count=500)
    local = pb.SnapshotTarget(local=pb.LocalDirectory(path="nightly"))
    made = (
        await ingest.stub.CreateSnapshot(
            pb.CreateSnapshotRequest(collection="movies", target=local), metadata=ann.metadata
        )
    ).snapshot
    file = ingest.settings.snapshot_root / "nightly" / made.file_name
    assert (file.parent / f"{made.file_name}.sha256").read_text().split()[0] == made.sha256
    # The collection changes after the snapshot; a refused restore must leave it exactly so.
    await ingest.stub.Upsert(
        pb.UpsertRequest(collection="movies", points=[pb.Point(id=pb.PointId(num=9999), vector=vec(9999))]),
        metadata=ann.metadata,
    )
    before = await top10(ingest, ann)
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    file.write_bytes(bytes(data))
    request = pb.RestoreSnapshotRequest(snapshot_id=made.snapshot_id, replace_existing=True)
    code, details = await code_of(ingest.stub.RestoreSnapshot(request, metadata=ann.metadata))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "SHA-256" in details
    file.write_bytes(bytes(data[: len(data) // 3]))
    code, details = await code_of(ingest.stub.RestoreSnapshot(request, metadata=ann.metadata))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert await count(ingest, ann) == 501
    assert await top10(ingest, ann) == before
    file.unlink()
    code, details = await code_of(ingest.stub.RestoreSnapshot(request, metadata=ann.metadata))
    assert code == grpc.StatusCode.NOT_FOUND and made.file_name in details


async def test_bad_snapshot_requests_are_refused(
    snap_ingest: IngestHandle, mesh_keys: MeshKeys, tmp_path: Path
) -> None:
    ingest = snap_ingest
    ann, bob = new_user(mesh_keys), new_user(mesh_keys)
    await fill(ingest, ann, count=10)
    made = (
        await ingest.stub.CreateSnapshot(
            pb.CreateSnapshotRequest(collection="movies", target=pb.SnapshotTarget(local=pb.LocalDirectory())),
            metadata=ann.metadata,
        )
    ).snapshot
    root = ingest.settings.snapshot_root
    (tmp_path / "outside").mkdir()
    (root / "escape").symlink_to(tmp_path / "outside")
    cases = [
        (pb.SnapshotTarget(local=pb.LocalDirectory(path="escape")), grpc.StatusCode.PERMISSION_DENIED),
        (pb.SnapshotTarget(local=pb.LocalDirectory(path="../up")), grpc.StatusCode.INVALID_ARGUMENT),
        (
            pb.SnapshotTarget(s3=pb.S3Bucket(endpoint="http://other.example:9000", bucket="snapshots")),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
    ]
    for target, expected in cases:
        code, _ = await code_of(
            ingest.stub.CreateSnapshot(
                pb.CreateSnapshotRequest(collection="movies", target=target), metadata=ann.metadata
            )
        )
        assert code == expected
    assert not any((tmp_path / "outside").iterdir())
    for call in (
        ingest.stub.RestoreSnapshot(pb.RestoreSnapshotRequest(snapshot_id=made.snapshot_id), metadata=bob.metadata),
        ingest.stub.DeleteSnapshot(pb.DeleteSnapshotRequest(snapshot_id=made.snapshot_id), metadata=bob.metadata),
    ):
        code, _ = await code_of(call)
        assert code == grpc.StatusCode.NOT_FOUND
    assert list((await ingest.stub.ListSnapshots(pb.ListSnapshotsRequest(), metadata=bob.metadata)).snapshots) == []
    await ingest.stub.DeleteSnapshot(pb.DeleteSnapshotRequest(snapshot_id=made.snapshot_id), metadata=ann.metadata)
    assert not (root / made.file_name).exists()


async def test_scheduled_snapshots_keep_the_newest_n(snap_ingest: IngestHandle, mesh_keys: MeshKeys) -> None:
    ingest = snap_ingest
    ann = new_user(mesh_keys)
    await fill(ingest, ann, count=50)
    target = pb.SnapshotTarget(local=pb.LocalDirectory(path="auto"))
    manual = (
        await ingest.stub.CreateSnapshot(
            pb.CreateSnapshotRequest(collection="movies", target=target), metadata=ann.metadata
        )
    ).snapshot
    code, details = await code_of(
        ingest.stub.SetSnapshotSchedule(
            pb.SetSnapshotScheduleRequest(
                collection="movies", schedule=pb.SnapshotSchedule(interval_seconds=0, target=target, keep=2)
            ),
            metadata=ann.metadata,
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "interval_seconds" in details
    answer = await ingest.stub.SetSnapshotSchedule(
        pb.SetSnapshotScheduleRequest(
            collection="movies", schedule=pb.SnapshotSchedule(interval_seconds=1, target=target, keep=2)
        ),
        metadata=ann.metadata,
    )
    assert answer.collection.snapshot_schedule.keep == 2
    scheduled: list[pb.Snapshot] = []
    for _ in range(200):
        listed = (
            await ingest.stub.ListSnapshots(pb.ListSnapshotsRequest(collection="movies"), metadata=ann.metadata)
        ).snapshots
        scheduled = [s for s in listed if s.scheduled]
        if (
            len(scheduled) >= 2
            and len({s.snapshot_id for s in scheduled}) == 2
            and await _taken_at_least(ingest, ann, 4)
        ):
            break
        await asyncio.sleep(0.2)
    assert len(scheduled) == 2  # the newest two; older scheduled ones were deleted
    assert scheduled[0].created_at.ToNanoseconds() > scheduled[1].created_at.ToNanoseconds()
    files = sorted(p.name for p in (ingest.settings.snapshot_root / "auto").glob("*.parquet"))
    assert files == sorted([manual.file_name, *(s.file_name for s in scheduled)])  # the manual one stays
    await ingest.stub.SetSnapshotSchedule(pb.SetSnapshotScheduleRequest(collection="movies"), metadata=ann.metadata)
    settled = {
        s.snapshot_id
        for s in (await ingest.stub.ListSnapshots(pb.ListSnapshotsRequest(), metadata=ann.metadata)).snapshots
    }
    await asyncio.sleep(1.5)
    after = {
        s.snapshot_id
        for s in (await ingest.stub.ListSnapshots(pb.ListSnapshotsRequest(), metadata=ann.metadata)).snapshots
    }
    assert after == settled  # no schedule, no more snapshots


async def _taken_at_least(ingest: IngestHandle, user: User, n: int) -> bool:
    """True once the schedule has run ``n`` times (the store's metric of scheduled snapshots)."""
    return ingest.app.domain.snapshots.scheduled_taken >= n
