"""Jobs end to end on the real service, real NATS (the INGEST work queue, the job records) and real
workers (in this process; test_job_crash.py runs them as processes and kills one)."""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chatmesh.ingest.v1 import ingest_pb2 as pb
from mesh.deps.nats import Nats
from mesh.deps.s3proxy import S3Proxy
from services.runtime.objectstore import ObjectStore, S3Settings
from services.runtime.server import ServiceServer
from tests.conftest_ingest import (
    IngestHandle,
    MeshKeys,
    User,
    ingest_settings,
    new_user,
    running_ingest,
    running_workers,
)

DIM = 8
TERMINAL = {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_COMPLETED_WITH_ERRORS, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED}


def vec(seed: int) -> list[float]:
    rng = random.Random(seed)
    v = [rng.uniform(-1, 1) for _ in range(DIM)]
    n = math.sqrt(sum(x * x for x in v))
    return [round(x / n, 6) for x in v]


def write_jsonl(path: Path, count: int, start: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for i in range(start, start + count):
            f.write(json.dumps({"vector": vec(i), "payload": {"title": f"movie {i}", "n": i}}) + "\n")


async def make_collection(
    ingest: IngestHandle, user: User, name: str = "movies", dim: int = DIM, model: str = ""
) -> None:
    await ingest.stub.CreateCollection(
        pb.CreateCollectionRequest(name=name, vector_size=dim, distance=pb.DISTANCE_COSINE, embedding_model=model),
        metadata=user.metadata,
    )


async def watch_to_end(ingest: IngestHandle, user: User, job_id: str) -> list[pb.JobProgress]:
    seen = []
    async for update in ingest.stub.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=user.metadata, timeout=120):
        seen.append(update.progress)
    return seen


async def points_count(ingest: IngestHandle, user: User, name: str = "movies") -> int:
    listed = await ingest.stub.ListCollections(pb.ListCollectionsRequest(), metadata=user.metadata)
    return next(c.points_count for c in listed.collections if c.name == name)


@pytest.fixture
async def workers(ingest: IngestHandle) -> AsyncIterator[list[str]]:
    """Two workers sending their batches to the in-process service (embedded store)."""
    async with running_workers(ingest.settings, 2, ingest_target=ingest.target, job_ack_wait_s=5) as names:
        yield names


async def test_a_jsonl_job_is_ingested_with_progress_that_never_goes_back(
    ingest: IngestHandle, workers: list[str], mesh_keys: MeshKeys
) -> None:
    ann = new_user(mesh_keys)
    await make_collection(ingest, ann)
    write_jsonl(ingest.settings.import_root / "exports" / "movies.jsonl", 3000)
    started = await ingest.stub.StartJob(
        pb.StartJobRequest(collection="movies", source=pb.JobSource(path="exports/movies.jsonl"), batch_size=100),
        metadata=ann.metadata,
    )
    assert started.job.progress.state == pb.JOB_STATE_QUEUED
    updates = await watch_to_end(ingest, ann, started.job.job_id)
    done = [u.points_done for u in updates]
    assert done == sorted(done)
    assert updates[-1].state == pb.JOB_STATE_SUCCEEDED
    assert (updates[-1].points_done, updates[-1].points_total, updates[-1].points_failed) == (3000, 3000, 0)
    assert updates[-1].batches_done == updates[-1].batches_total == 30
    assert await points_count(ingest, ann) == 3000
    job = (await ingest.stub.GetJob(pb.GetJobRequest(job_id=started.job.job_id), metadata=ann.metadata)).job
    assert job.HasField("started_at") and job.HasField("finished_at")
    listed = await ingest.stub.ListJobs(pb.ListJobsRequest(collection="movies"), metadata=ann.metadata)
    assert [j.job_id for j in listed.jobs] == [started.job.job_id]
    hit = await ingest.stub.Search(
        pb.SearchRequest(collection="movies", vector=vec(1234), limit=1), metadata=ann.metadata
    )
    assert hit.points[0].payload["title"] == "movie 1234"
    # The same file again: derived ids are the same, so points are replaced, not added.
    again = await ingest.stub.StartJob(
        pb.StartJobRequest(collection="movies", source=pb.JobSource(path="exports/movies.jsonl")), metadata=ann.metadata
    )
    assert (await watch_to_end(ingest, ann, again.job.job_id))[-1].state == pb.JOB_STATE_SUCCEEDED
    assert await points_count(ingest, ann) == 3000


async def test_bad_lines_are_recorded_with_their_line_and_the_job_completes_with_errors(
    ingest: IngestHandle, workers: list[str], mesh_keys: MeshKeys
) -> None:
    ann = new_user(mesh_keys)
    await make_collection(ingest, ann)
    lines = [json.dumps({"vector": vec(i), "payload": {"n": i}}) for i in range(10)]
    lines[2] = '{"vector": [1, 2'
    lines[5] = json.dumps({"vector": [0.5] * (DIM + 1)})
    lines[7] = json.dumps({"vector": [0.1] * DIM, "payload": {"blob": "x" * 70_000}})
    (ingest.settings.import_root).mkdir(parents=True, exist_ok=True)
    (ingest.settings.import_root / "mixed.jsonl").write_text("\n".join(lines) + "\n")
    started = await ingest.stub.StartJob(
        pb.StartJobRequest(collection="movies", source=pb.JobSource(path="mixed.jsonl")), metadata=ann.metadata
    )
    final = (await watch_to_end(ingest, ann, started.job.job_id))[-1]
    assert final.state == pb.JOB_STATE_COMPLETED_WITH_ERRORS
    assert (final.points_done, final.points_failed, final.points_total) == (7, 3, 10)
    job = (await ingest.stub.GetJob(pb.GetJobRequest(job_id=started.job.job_id), metadata=ann.metadata)).job
    reasons = {f.position: f.reason for f in job.failures}
    assert sorted(reasons) == [3, 6, 8]
    assert reasons[3].startswith("line 3: not JSON")
    assert reasons[6] == "line 6: vector has 9 floats, the collection takes 8"
    assert reasons[8].startswith("line 8: payload is")
    assert await points_count(ingest, ann) == 7


async def test_a_file_that_is_not_what_it_claims_fails_the_job_naming_the_line(
    ingest: IngestHandle, workers: list[str], mesh_keys: MeshKeys
) -> None:
    ann = new_user(mesh_keys)
    await make_collection(ingest, ann)
    ingest.settings.import_root.mkdir(parents=True, exist_ok=True)
    (ingest.settings.import_root / "notes.jsonl").write_text("id,vector\n1,[0.1]\n")
    started = await ingest.stub.StartJob(
        pb.StartJobRequest(collection="movies", source=pb.JobSource(path="notes.jsonl")), metadata=ann.metadata
    )
    await watch_to_end(ingest, ann, started.job.job_id)
    job = (await ingest.stub.GetJob(pb.GetJobRequest(job_id=started.job.job_id), metadata=ann.metadata)).job
    assert job.progress.state == pb.JOB_STATE_FAILED
    assert "line 1: not JSON" in job.error
    (ingest.settings.import_root / "broken.parquet").write_bytes(b"PAR1 but not really")
    started = await ingest.stub.StartJob(
        pb.StartJobRequest(collection="movies", source=pb.JobSource(path="broken.parquet")), metadata=ann.metadata
    )
    await watch_to_end(ingest, ann, started.job.job_id)
    job = (await ingest.stub.GetJob(pb.GetJobRequest(job_id=started.job.job_id), metadata=ann.metadata)).job
    assert job.progress.state == pb.JOB_STATE_FAILED and "not a Parquet file" in job.error


async def code_of(call: object) -> tuple[grpc.StatusCode, str]:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    raise AssertionError("the call succeeded")


async def test_bad_job_requests_are_refused_at_once(ingest: IngestHandle, mesh_keys: MeshKeys, tmp_path: Path) -> None:
    ann, bob = new_user(mesh_keys), new_user(mesh_keys)
    await make_collection(ingest, ann)
    start = ingest.stub.StartJob
    root = ingest.settings.import_root
    root.mkdir(parents=True, exist_ok=True)
    write_jsonl(root / "ok.jsonl", 5)
    (tmp_path / "secret.jsonl").write_text("{}\n")
    (root / "link.jsonl").symlink_to(tmp_path / "secret.jsonl")
    (root / "data.bin").write_text("x")
    src = pb.JobSource
    docs = pb.InlineDocuments(documents=[pb.Document(text="hi")])
    codes = grpc.StatusCode
    cases = [
        ("nothing", src(path="ok.jsonl"), 0, codes.NOT_FOUND, "nothing"),
        ("movies", src(path="missing.jsonl"), 0, codes.NOT_FOUND, "source.path"),
        ("movies", src(path="link.jsonl"), 0, codes.PERMISSION_DENIED, "source.path"),
        ("movies", src(path="../etc/passwd"), 0, codes.INVALID_ARGUMENT, "source.path"),
        ("movies", src(path="data.bin"), 0, codes.INVALID_ARGUMENT, "source.format"),
        ("movies", src(s3=pb.S3Object(bucket="elsewhere", key="a.jsonl")), 0, codes.PERMISSION_DENIED, "S3"),
        ("movies", src(documents=docs), 0, codes.FAILED_PRECONDITION, "embedding model"),
        ("movies", src(path="ok.jsonl"), 10, codes.INVALID_ARGUMENT, "batch_size"),
    ]
    for collection, source, batch, code, words in cases:
        request = pb.StartJobRequest(collection=collection, source=source, batch_size=batch)
        got, details = await code_of(start(request, metadata=ann.metadata))
        assert (got, words in details) == (code, True), details
    started = await start(
        pb.StartJobRequest(collection="movies", source=pb.JobSource(path="ok.jsonl")), metadata=ann.metadata
    )
    job_id = started.job.job_id
    for call in (
        ingest.stub.GetJob(pb.GetJobRequest(job_id=job_id), metadata=bob.metadata),
        ingest.stub.CancelJob(pb.CancelJobRequest(job_id=job_id), metadata=bob.metadata),
        watch_to_end(ingest, bob, job_id),
    ):
        got, details = await code_of(call)
        assert got == grpc.StatusCode.NOT_FOUND and job_id in details
    listed = await ingest.stub.ListJobs(pb.ListJobsRequest(), metadata=bob.metadata)
    assert list(listed.jobs) == []


async def test_a_users_active_jobs_are_capped(
    nats_server: Nats, mesh_keys: MeshKeys, ingest_inference: ServiceServer, tmp_path: Path
) -> None:
    settings = ingest_settings(nats_server, mesh_keys, tmp_path, ingest_inference.port, max_active_jobs_per_user=2)
    async with running_ingest(settings) as ingest:  # no workers: jobs stay queued
        ann, bob = new_user(mesh_keys), new_user(mesh_keys)
        for user in (ann, bob):
            await make_collection(ingest, user)
        write_jsonl(settings.import_root / "a.jsonl", 5)
        request = pb.StartJobRequest(collection="movies", source=pb.JobSource(path="a.jsonl"))
        first = await ingest.stub.StartJob(request, metadata=ann.metadata)
        await ingest.stub.StartJob(request, metadata=ann.metadata)
        try:
            await ingest.stub.StartJob(request, metadata=ann.metadata)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "retry-after-ms" in dict(exc.trailing_metadata() or ())
        else:
            raise AssertionError("a third active job was started")
        await ingest.stub.StartJob(request, metadata=bob.metadata)  # bob's cap is his own
        code, details = await code_of(
            ingest.stub.DeleteCollection(pb.DeleteCollectionRequest(name="movies"), metadata=ann.metadata)
        )
        assert code == grpc.StatusCode.FAILED_PRECONDITION and first.job.job_id in details or "job" in details
        cancelled = await ingest.stub.CancelJob(pb.CancelJobRequest(job_id=first.job.job_id), metadata=ann.metadata)
        assert cancelled.job.progress.state == pb.JOB_STATE_CANCELLED
        again = await ingest.stub.CancelJob(pb.CancelJobRequest(job_id=first.job.job_id), metadata=ann.metadata)
        assert again.job.finished_at == cancelled.job.finished_at  # idempotent
        await ingest.stub.StartJob(request, metadata=ann.metadata)  # room again


async def test_cancel_stops_the_work_within_a_batch(ingest: IngestHandle, mesh_keys: MeshKeys) -> None:
    ann = new_user(mesh_keys)
    await make_collection(ingest, ann)
    write_jsonl(ingest.settings.import_root / "big.jsonl", 20_000)
    async with running_workers(ingest.settings, 1, ingest_target=ingest.target, worker_concurrency=1):
        started = await ingest.stub.StartJob(
            pb.StartJobRequest(
                collection="movies", source=pb.JobSource(path="big.jsonl"), batch_size=64, parallelism=1
            ),
            metadata=ann.metadata,
        )
        job_id = started.job.job_id
        async for update in ingest.stub.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=ann.metadata):
            if update.progress.points_done >= 1000:
                break
        cancelled = await ingest.stub.CancelJob(pb.CancelJobRequest(job_id=job_id), metadata=ann.metadata)
        assert cancelled.job.progress.state == pb.JOB_STATE_CANCELLED
        at_cancel = await points_count(ingest, ann)
        await asyncio.sleep(1.5)
        after = await points_count(ingest, ann)
        final = (await ingest.stub.GetJob(pb.GetJobRequest(job_id=job_id), metadata=ann.metadata)).job
    assert after - at_cancel <= 64  # at most the batch in flight finished
    assert after < 20_000
    assert final.progress.state == pb.JOB_STATE_CANCELLED
    assert final.progress.points_done <= after


async def test_csv_parquet_and_s3_sources(
    ingest: IngestHandle, workers: list[str], mesh_keys: MeshKeys, s3: S3Settings, s3_server: S3Proxy
) -> None:
    ann = new_user(mesh_keys)
    await make_collection(ingest, ann)
    root = ingest.settings.import_root
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "movies.csv", "w") as f:
        f.write("id,vector,title\n")
        for i in range(100):
            f.write(f'{i},"{json.dumps(vec(i))}",movie {i}\n')
    table = pa.table(
        {"id": list(range(100, 250)), "vector": [vec(i) for i in range(100, 250)], "year": list(range(150))}
    )
    pq.write_table(table, root / "movies.parquet")
    for path in ("movies.csv", "movies.parquet"):
        started = await ingest.stub.StartJob(
            pb.StartJobRequest(collection="movies", source=pb.JobSource(path=path)), metadata=ann.metadata
        )
        assert (await watch_to_end(ingest, ann, started.job.job_id))[-1].state == pb.JOB_STATE_SUCCEEDED
    assert await points_count(ingest, ann) == 250
    found = await ingest.stub.Search(
        pb.SearchRequest(collection="movies", vector=vec(7), limit=1), metadata=ann.metadata
    )
    assert (found.points[0].id.num, found.points[0].payload["title"]) == (7, "movie 7")
    found = await ingest.stub.Search(
        pb.SearchRequest(collection="movies", vector=vec(120), limit=1), metadata=ann.metadata
    )
    assert (found.points[0].id.num, found.points[0].payload["year"]) == (120, 20)


async def test_an_object_in_an_s3_bucket_is_a_source(
    nats_server: Nats,
    mesh_keys: MeshKeys,
    ingest_inference: ServiceServer,
    tmp_path: Path,
    s3: S3Settings,
    s3_server: S3Proxy,
) -> None:
    settings = ingest_settings(nats_server, mesh_keys, tmp_path, ingest_inference.port, s3=s3)
    async with running_ingest(settings) as ingest, running_workers(settings, 1, ingest_target=ingest.target):
        ann = new_user(mesh_keys)
        await make_collection(ingest, ann)
        bucket = ObjectStore(s3).bucket(s3_server.endpoint, "imports")
        await bucket.ensure_exists()
        write_jsonl(tmp_path / "upload.jsonl", 300, start=1000)
        await bucket.put_file("2026/extra.jsonl", tmp_path / "upload.jsonl")
        code, details = await code_of(
            ingest.stub.StartJob(
                pb.StartJobRequest(
                    collection="movies", source=pb.JobSource(s3=pb.S3Object(bucket="imports", key="nope.jsonl"))
                ),
                metadata=ann.metadata,
            )
        )
        assert code == grpc.StatusCode.NOT_FOUND and "source.s3.key" in details
        started = await ingest.stub.StartJob(
            pb.StartJobRequest(
                collection="movies", source=pb.JobSource(s3=pb.S3Object(bucket="imports", key="2026/extra.jsonl"))
            ),
            metadata=ann.metadata,
        )
        assert (await watch_to_end(ingest, ann, started.job.job_id))[-1].state == pb.JOB_STATE_SUCCEEDED
        assert await points_count(ingest, ann) == 300


async def test_one_users_big_job_does_not_hold_back_another_users_small_one(
    ingest: IngestHandle, mesh_keys: MeshKeys
) -> None:
    ann, bob = new_user(mesh_keys), new_user(mesh_keys)
    for user in (ann, bob):
        await make_collection(ingest, user)
    write_jsonl(ingest.settings.import_root / "big.jsonl", 16_000)
    write_jsonl(ingest.settings.import_root / "small.jsonl", 100, start=50_000)
    async with running_workers(ingest.settings, 1, ingest_target=ingest.target, worker_concurrency=2):
        big = await ingest.stub.StartJob(
            pb.StartJobRequest(
                collection="movies", source=pb.JobSource(path="big.jsonl"), batch_size=64, parallelism=8
            ),
            metadata=ann.metadata,
        )
        async for update in ingest.stub.WatchJob(pb.WatchJobRequest(job_id=big.job.job_id), metadata=ann.metadata):
            if update.progress.points_done > 0:
                break
        small = await ingest.stub.StartJob(
            pb.StartJobRequest(collection="movies", source=pb.JobSource(path="small.jsonl")), metadata=bob.metadata
        )
        assert (await watch_to_end(ingest, bob, small.job.job_id))[-1].state == pb.JOB_STATE_SUCCEEDED
        ann_now = (await ingest.stub.GetJob(pb.GetJobRequest(job_id=big.job.job_id), metadata=ann.metadata)).job
        assert ann_now.progress.state == pb.JOB_STATE_RUNNING  # bob did not wait for ann's job to end
        assert ann_now.progress.points_done < 16_000
        assert (await watch_to_end(ingest, ann, big.job.job_id))[-1].state == pb.JOB_STATE_SUCCEEDED
