"""Health follows the store (NOT_SERVING while Qdrant is down, SERVING once it is back), and
/metrics carries what dashboards and an autoscaler need (points written, the queue's backlog)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chatmesh.ingest.v1 import ingest_pb2 as pb
from mesh.deps.base import free_port
from mesh.deps.nats import Nats
from mesh.deps.process import launch, terminate
from services.ingest.server import SERVICE_NAME
from services.runtime.server import ServiceServer
from tests.conftest_ingest import MeshKeys, ingest_settings, new_user, qdrant_node, require_qdrant, running_ingest


async def status(channel: grpc.aio.Channel) -> int:
    answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
    return int(answer.status)


async def until(channel: grpc.aio.Channel, wanted: int) -> None:
    for _ in range(200):
        if await status(channel) == wanted:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"health never became {wanted}")


async def test_the_service_is_not_serving_while_its_qdrant_is_down(
    nats_server: Nats, mesh_keys: MeshKeys, ingest_inference: ServiceServer, tmp_path: Path
) -> None:
    require_qdrant()
    node = qdrant_node(tmp_path / "qdrant")
    await asyncio.to_thread(node.prepare)
    proc = await launch(node.spec())
    try:
        await node.wait_ready(60)
        settings = ingest_settings(nats_server, mesh_keys, tmp_path, ingest_inference.port, qdrant_url=node.url)
        async with running_ingest(settings) as ingest:
            ann = new_user(mesh_keys)
            await until(ingest.channel, health_pb2.HealthCheckResponse.SERVING)
            await ingest.stub.CreateCollection(
                pb.CreateCollectionRequest(name="m", vector_size=2, distance=pb.DISTANCE_DOT), metadata=ann.metadata
            )
            await terminate(proc, 10)
            await until(ingest.channel, health_pb2.HealthCheckResponse.NOT_SERVING)
            try:
                await ingest.stub.Upsert(
                    pb.UpsertRequest(collection="m", points=[pb.Point(id=pb.PointId(num=1), vector=[1, 0])]),
                    metadata=ann.metadata,
                    timeout=20,
                )
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE
                assert "Qdrant" in (exc.details() or "")
            else:
                raise AssertionError("an upsert was acknowledged with the store down")
            proc = await launch(node.spec())  # the same node, its data kept
            await node.wait_ready(60)
            await until(ingest.channel, health_pb2.HealthCheckResponse.SERVING)
            await ingest.stub.Upsert(
                pb.UpsertRequest(collection="m", points=[pb.Point(id=pb.PointId(num=1), vector=[1, 0])]),
                metadata=ann.metadata,
            )
    finally:
        await terminate(proc, 10)


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:  # noqa: S310 - loopback
        text = answer.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = line.split("{")[0].split(" ")[0]
            values[name] = values.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return values


async def test_metrics_show_points_written_and_the_queue_backlog(
    nats_server: Nats, mesh_keys: MeshKeys, ingest_inference: ServiceServer, tmp_path: Path
) -> None:
    port = free_port()
    settings = ingest_settings(
        nats_server, mesh_keys, tmp_path, ingest_inference.port, metrics_port=port, backlog_interval_s=0.2
    )
    async with running_ingest(settings) as ingest:  # no workers: the job's work waits in the queue
        ann = new_user(mesh_keys)
        await ingest.stub.CreateCollection(
            pb.CreateCollectionRequest(name="m", vector_size=2, distance=pb.DISTANCE_DOT), metadata=ann.metadata
        )
        points = [pb.Point(id=pb.PointId(num=i), vector=[1, i]) for i in range(30)]
        await ingest.stub.Upsert(pb.UpsertRequest(collection="m", points=points), metadata=ann.metadata)
        settings.import_root.mkdir(parents=True)
        with open(settings.import_root / "p.jsonl", "w") as f:
            for i in range(5000):
                f.write(json.dumps({"vector": [1, i]}) + "\n")
        await ingest.stub.StartJob(
            pb.StartJobRequest(collection="m", source=pb.JobSource(path="p.jsonl")), metadata=ann.metadata
        )
        values: dict[str, float] = {}
        for _ in range(100):
            values = await asyncio.to_thread(scrape, port)
            if values.get("chatmesh_ingest_queue_backlog_items", 0) > 0:
                break
            await asyncio.sleep(0.1)
        assert values["chatmesh_ingest_queue_backlog_items"] >= 1  # the plan message, waiting for a worker
        assert values["chatmesh_ingest_points_written_total"] == 30
        assert values["chatmesh_ingest_store_up"] == 1
        assert values["chatmesh_ingest_batch_seconds_count"] == 1
        assert values["chatmesh_ingest_jobs_active"] == 1
