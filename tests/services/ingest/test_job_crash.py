"""The issue's load: 100,000 points of dimension 100 with movie-like payloads, two worker
processes (`python -m services.ingest.worker`), one SIGKILLed halfway. The job completes with
exactly 100,000 points and progress that never went backwards; the kill cost a redelivery."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import urllib.request
from pathlib import Path

import numpy as np

from chatmesh.ingest.v1 import ingest_pb2 as pb
from mesh.deps.base import free_port
from tests.conftest_ingest import IngestHandle, MeshKeys, new_user

ROOT = Path(__file__).resolve().parents[3]
POINTS = 100_000
DIM = 100
GENRES = ["drama", "comedy", "thriller", "documentary", "animation", "horror", "romance"]


def write_movies(path: Path) -> None:
    """The seed's load-test shape: random vectors, payloads like its movie records."""
    rng = np.random.default_rng(7)
    vectors = np.round(rng.random((POINTS, DIM), dtype=np.float32), 4)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for i in range(POINTS):
            payload = {
                "title": f"Movie {i}",
                "year": 1920 + i % 105,
                "genres": [GENRES[i % 7], GENRES[(i * 3) % 7]],
                "rating": round(float(i % 100) / 10, 1),
                "director": f"Director {i % 997}",
            }
            f.write(f'{{"vector":{json.dumps(vectors[i].tolist())},"payload":{json.dumps(payload)}}}\n')


def worker_env(ingest: IngestHandle, mesh_keys: MeshKeys, name: str, metrics_port: int) -> dict[str, str]:
    s = ingest.settings
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen" / "python")]),
        "CHATMESH_INGEST_NATS__URL": s.nats.url,
        "CHATMESH_INGEST_BUS_NAMESPACE": s.bus_namespace,
        "CHATMESH_INGEST_TOKEN_PUBLIC_KEY_FILE": str(mesh_keys.access.public),
        "CHATMESH_INGEST_SERVICE_TOKEN_PUBLIC_KEY_FILE": str(mesh_keys.service.public),
        "CHATMESH_INGEST_SERVICE_TOKEN_PRIVATE_KEY_FILE": str(mesh_keys.service.private),
        "CHATMESH_INGEST_INGEST_TARGET": ingest.target,
        "CHATMESH_INGEST_INFERENCE_TARGET": s.inference_target,
        "CHATMESH_INGEST_DATA_DIR": str(s.data_dir),
        "CHATMESH_INGEST_IMPORT_ROOT": str(s.import_root),
        "CHATMESH_INGEST_METRICS_PORT": str(metrics_port),
        "CHATMESH_INGEST_WORKER_NAME": name,
        "CHATMESH_INGEST_JOB_ACK_WAIT_S": "3",
        "CHATMESH_INGEST_LOG_LEVEL": "warning",
    }


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:  # noqa: S310 - loopback
        return str(answer.read().decode())


async def wait_metrics(port: int, proc: asyncio.subprocess.Process) -> None:
    for _ in range(300):
        if proc.returncode is not None:
            raise AssertionError(f"worker exited with {proc.returncode}")
        try:
            await asyncio.to_thread(metrics_text, port)
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise AssertionError("worker never served /metrics")


def counter(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


async def test_a_worker_killed_halfway_costs_a_redelivery_not_data(
    ingest: IngestHandle, mesh_keys: MeshKeys, tmp_path: Path
) -> None:
    ann = new_user(mesh_keys)
    await ingest.stub.CreateCollection(
        pb.CreateCollectionRequest(
            name="movies",
            vector_size=DIM,
            distance=pb.DISTANCE_COSINE,
            payload_indexes=[pb.PayloadIndex(key="genres", type=pb.PAYLOAD_INDEX_TYPE_KEYWORD)],
        ),
        metadata=ann.metadata,
    )
    await asyncio.to_thread(write_movies, ingest.settings.import_root / "movies.jsonl")
    ports = [free_port(), free_port()]
    procs = []
    logs = []
    for number, port in enumerate(ports, start=1):
        log = open(tmp_path / f"worker-{number}.log", "wb")  # noqa: SIM115 - closed below
        logs.append(log)
        procs.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services.ingest.worker",
                env=worker_env(ingest, mesh_keys, f"crash-worker-{number}", port),
                cwd=ROOT,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        )
    try:
        for port, proc in zip(ports, procs, strict=True):
            await wait_metrics(port, proc)
        started = await ingest.stub.StartJob(
            pb.StartJobRequest(
                collection="movies", source=pb.JobSource(path="movies.jsonl"), batch_size=128, parallelism=4
            ),
            metadata=ann.metadata,
        )
        seen: list[pb.JobProgress] = []
        killed = False
        async for update in ingest.stub.WatchJob(
            pb.WatchJobRequest(job_id=started.job.job_id), metadata=ann.metadata, timeout=600
        ):
            seen.append(update.progress)
            if not killed and update.progress.points_done >= POINTS // 2:
                # Kill a worker that holds work items right now (its /metrics says so).
                busy = [
                    counter(await asyncio.to_thread(metrics_text, p), "chatmesh_ingest_worker_busy_items")
                    for p in ports
                ]
                victim = next((i for i, b in enumerate(busy) if b >= 1), None)
                if victim is not None:
                    procs[victim].send_signal(signal.SIGKILL)
                    await procs[victim].wait()
                    killed = True
                    killed_at = update.progress.points_done
        assert killed and killed_at < POINTS
        final = seen[-1]
        assert final.state == pb.JOB_STATE_SUCCEEDED
        assert (final.points_done, final.points_failed, final.points_total) == (POINTS, 0, POINTS)
        done = [u.points_done for u in seen]
        assert done == sorted(done)  # progress never went backwards
        listed = await ingest.stub.ListCollections(pb.ListCollectionsRequest(), metadata=ann.metadata)
        assert listed.collections[0].points_count == POINTS  # exactly: nothing lost, nothing twice
        survivor = await asyncio.to_thread(metrics_text, ports[1 - victim])
        assert counter(survivor, "chatmesh_ingest_worker_redeliveries_total") >= 1
        dramas = await ingest.stub.Search(
            pb.SearchRequest(
                collection="movies",
                vector=[0.5] * DIM,
                limit=5,
                filter=[pb.PayloadMatch(key="genres", string_value="drama")],
            ),
            metadata=ann.metadata,
        )
        assert len(dramas.points) == 5 and all("drama" in list(p.payload["genres"]) for p in dramas.points)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()
        for log in logs:
            log.close()
