"""GetQueueStats on the real service, real NATS (the INGEST work queue's consumers, the job
records, the workers bucket) and real workers in this process: the backlog waits while no
worker runs, workers report in, the numbers move while a job runs and settle when it ends,
and another user sees the counts but never the job."""

from __future__ import annotations

import asyncio
import json
import time

import grpc

from chatmesh.ingest.v1 import ingest_pb2 as pb
from tests.conftest_ingest import IngestHandle, MeshKeys, User, new_user, running_workers
from tests.services.ingest.test_jobs import make_collection, vec, watch_to_end


async def stats(ingest: IngestHandle, user: User) -> pb.GetQueueStatsResponse:
    return await ingest.stub.GetQueueStats(pb.GetQueueStatsRequest(), metadata=user.metadata, timeout=10)


async def until(ingest: IngestHandle, user: User, check: object, timeout_s: float = 30) -> pb.GetQueueStatsResponse:
    deadline = time.monotonic() + timeout_s
    while True:
        seen = await stats(ingest, user)
        if check(seen):  # type: ignore[operator]
            return seen
        assert time.monotonic() < deadline, f"never got there; last seen:\n{seen}"
        await asyncio.sleep(0.2)


async def test_the_queue_backlog_jobs_workers_and_rate_as_any_user_sees_them(
    ingest: IngestHandle, mesh_keys: MeshKeys
) -> None:
    ann, bob = new_user(mesh_keys), new_user(mesh_keys)
    idle = await stats(ingest, bob)
    assert (idle.pending_items, idle.in_flight_items, idle.jobs_in_flight, idle.workers_seen) == (0, 0, 0, 0)
    assert idle.points_per_second == 0 and idle.HasField("sampled_at")

    await make_collection(ingest, ann)
    path = ingest.settings.import_root / "big.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"vector": vec(i), "payload": {"n": i}}) + "\n" for i in range(20_000)))
    started = await ingest.stub.StartJob(
        pb.StartJobRequest(collection="movies", source=pb.JobSource(path="big.jsonl"), batch_size=64, parallelism=1),
        metadata=ann.metadata,
    )
    job_id = started.job.job_id

    # No worker yet: the job's plan waits in the queue; bob sees it counted, not whose it is.
    waiting = await stats(ingest, bob)
    assert (waiting.pending_items, waiting.jobs_in_flight, waiting.my_jobs_in_flight, waiting.workers_seen) == (
        1,
        1,
        0,
        0,
    )
    assert job_id not in str(waiting) and ann.user_id not in str(waiting)
    assert (await stats(ingest, ann)).my_jobs_in_flight == 1

    async with running_workers(ingest.settings, 2, ingest_target=ingest.target, job_ack_wait_s=5):
        await until(ingest, bob, lambda s: s.workers_seen == 2)
        # While it runs: items in flight and points per second, all of them ann's.
        busy = await until(ingest, ann, lambda s: s.in_flight_items > 0 and s.my_points_per_second > 0, 120)
        assert busy.jobs_in_flight == busy.my_jobs_in_flight == 1
        assert busy.points_per_second >= busy.my_points_per_second > 0
        assert busy.in_flight_items <= 1, "a job of parallelism 1 has at most one item in flight"
        seen_by_bob = await stats(ingest, bob)
        assert seen_by_bob.my_jobs_in_flight == 0 and seen_by_bob.my_points_per_second == 0
        assert job_id not in str(seen_by_bob)
        assert (await watch_to_end(ingest, ann, job_id))[-1].state == pb.JOB_STATE_SUCCEEDED
        done = await until(ingest, bob, lambda s: s.jobs_in_flight == 0)
        assert (done.pending_items, done.in_flight_items, done.points_per_second) == (0, 0, 0)
        assert done.workers_seen == 2
    # Workers that stop say so: they are no longer counted.
    gone = await until(ingest, bob, lambda s: s.workers_seen == 0, 10)
    assert gone.jobs_in_flight == 0


async def test_queue_stats_need_a_signed_in_caller(ingest: IngestHandle) -> None:
    try:
        await ingest.stub.GetQueueStats(pb.GetQueueStatsRequest(), timeout=10)
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
    else:
        raise AssertionError("GetQueueStats answered a caller without a token")
