"""make bench-ingest: ingest through the gateway against Qdrant written to directly, same run.

The seed's load test: dimension 100, batches of 100, random vectors, ``--parallelism`` batches
in flight, through Envoy into the ingest service (its own process, as in the mesh) on

* the **server** store (a real Qdrant 1.18 server, ../shared/bin/qdrant): ``points_per_s``;
  baseline: the same points written straight to the same server with qdrant-client's own
  batch upload (``upload_collection``, the same batch size and parallelism, ``wait=True``);
* the **embedded** store (Qdrant Edge in the service; run first, while the Qdrant server
  is idle): baseline: Qdrant Edge called in-process with the same batches, the better of
  one thread and ``--parallelism`` threads; stderr has the CPU of each process per round;
* the server store with 1,536 dimensions: ``points_per_s_1536``;
* documents embedded by the bundled model (Upsert with documents, through the gateway):
  ``docs_per_s`` and the embedding tokens per second it implies, against inference.Embed
  called alone with the same texts and the same model.

Ours and the baselines alternate in rounds, so machine noise hits both; each figure is the
median of its rounds. Prints ``key=value`` lines, ``ratio_vs_direct`` last.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import qdrant_edge as qe
from qdrant_client import QdrantClient, models

from bench.harness import (
    CpuMeter,
    Keys,
    dependency_pids,
    gateway,
    make_keys,
    nats_server,
    scratch,
    service,
    service_env,
)
from bench.stats import emit
from chatmesh.inference.v1 import inference_pb2, inference_pb2_grpc
from chatmesh.ingest.v1 import ingest_pb2 as pb
from chatmesh.ingest.v1 import ingest_pb2_grpc
from mesh.deps.base import free_port
from mesh.deps.nats import Nats
from mesh.deps.process import running
from mesh.deps.qdrant import Qdrant, QdrantConfig, missing_reason, qdrant_binary
from services.runtime.tokens import generate_key_pair

MODEL = "smollm2-135m-instruct-q4_1"
MODEL_DIM = 576
DOC = (
    "Passage {i}. The committee met on a grey morning to review the harbour plans, the budget for the new "
    "ferry terminal and the schedule of the dredging works, and agreed to publish the figures next week."
)


def qdrant_node(home: Path) -> Qdrant:
    """A Qdrant node on free ports (gRPC on REST + 1, as qdrant-client expects)."""
    while True:
        port = free_port()
        try:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return Qdrant(QdrantConfig(home=home, http_port=port, grpc_port=port + 1))


def ingest_env(port: int, nats: Nats, keys: Keys, service_keys: Path, home: Path, **extra: str) -> dict[str, str]:
    """The ingest service's environment as the supervisor gives it, plus ``extra``."""
    env = service_env(
        "ingest",
        port,
        nats,
        None,
        keys,
        {
            "SERVICE_TOKEN_PUBLIC_KEY_FILE": str(service_keys / "service_token.pub.pem"),
            "SERVICE_TOKEN_PRIVATE_KEY_FILE": str(service_keys / "service_token.pem"),
            "DATA_DIR": str(home),
            "IMPORT_ROOT": str(home / "import"),
            "SNAPSHOT_ROOT": str(home / "snapshots"),
            "MAX_INFLIGHT_UPSERTS_PER_USER": "64",
            "BUS_NAMESPACE": uuid.uuid4().hex[:8],
            **extra,
        },
    )
    return env


def requests_of(collection: str, vectors: np.ndarray, batch: int, first_id: int) -> list[pb.UpsertRequest]:
    """UpsertRequests of ``batch`` points each (built before the clock starts, as the baseline's arrays are)."""
    rows = vectors.tolist()
    return [
        pb.UpsertRequest(
            collection=collection,
            points=[
                pb.Point(id=pb.PointId(num=first_id + i), vector=rows[i])
                for i in range(start, min(start + batch, len(rows)))
            ],
        )
        for start in range(0, len(rows), batch)
    ]


async def through_gateway(
    stub: ingest_pb2_grpc.IngestServiceStub,
    auth: tuple[tuple[str, str], ...],
    requests: list[pb.UpsertRequest],
    parallelism: int,
) -> float:
    """Send ``requests`` with ``parallelism`` in flight; points per second."""
    queue = list(reversed(requests))
    points = sum(len(r.points) for r in requests)

    async def sender() -> None:
        while queue:
            await stub.Upsert(queue.pop(), metadata=auth, timeout=60)

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(parallelism)))
    return points / (time.perf_counter() - started)


def direct_server(qdrant: Qdrant, vectors: np.ndarray, batch: int, parallelism: int) -> float:
    """qdrant-client's own batch upload of ``vectors`` into a fresh collection; points per second."""
    client = QdrantClient(
        host="127.0.0.1", port=qdrant.config.http_port, grpc_port=qdrant.config.grpc_port, prefer_grpc=True
    )
    name = f"direct{uuid.uuid4().hex[:8]}"
    client.create_collection(
        name, vectors_config=models.VectorParams(size=vectors.shape[1], distance=models.Distance.COSINE)
    )
    started = time.perf_counter()
    client.upload_collection(
        name, vectors=vectors, ids=list(range(len(vectors))), batch_size=batch, parallel=parallelism, wait=True
    )
    rate = len(vectors) / (time.perf_counter() - started)
    assert client.count(name, exact=True).count == len(vectors)
    client.delete_collection(name)
    client.close()
    return rate


def direct_edge(home: Path, vectors: np.ndarray, batch: int, threads: int = 1) -> float:
    """Qdrant Edge in this process, the same batches from ``threads`` threads; points per second."""
    path = home / f"edge-{uuid.uuid4().hex[:8]}"
    shard = qe.EdgeShard.create(
        str(path), qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=vectors.shape[1], distance=qe.Distance.Cosine))
    )
    rows = vectors.tolist()
    starts = list(range(0, len(rows), batch))

    def write(mine: list[int]) -> None:
        for start in mine:
            shard.update(
                qe.UpdateOperation.upsert_points(
                    [qe.Point(i, rows[i], {}) for i in range(start, min(start + batch, len(rows)))]
                )
            )

    started = time.perf_counter()
    if threads == 1:
        write(starts)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(write, [starts[k::threads] for k in range(threads)]))
    rate = len(rows) / (time.perf_counter() - started)
    assert shard.count(qe.CountRequest(exact=True)) == len(rows)
    shard.close()
    shutil.rmtree(path, ignore_errors=True)
    return rate


@contextlib.asynccontextmanager
async def ingest_behind_gateway(
    home: Path, env: dict[str, str], port: int
) -> AsyncIterator[tuple[str, dict[str, int]]]:
    """The ingest service as a process, and Envoy in front of it; yields the gateway's target and the pids."""
    gateway_home = home / f"gateway-{port}"
    (gateway_home / "logs").mkdir(parents=True, exist_ok=True)
    async with service("ingest", home, env, port) as svc, gateway(gateway_home, [svc]) as gw:
        pids = {"ingest": svc.proc.pid, "client": os.getpid()}
        pids.update({k: v for k, v in dependency_pids(home).items() if k != "envoy"})
        pids.update({k: v for k, v in dependency_pids(gateway_home).items() if k == "envoy"})
        yield f"127.0.0.1:{gw.port}", pids


async def create(
    stub: ingest_pb2_grpc.IngestServiceStub, auth: tuple[tuple[str, str], ...], name: str, dim: int, model: str = ""
) -> None:
    await stub.CreateCollection(
        pb.CreateCollectionRequest(name=name, vector_size=dim, distance=pb.DISTANCE_COSINE, embedding_model=model),
        metadata=auth,
    )


async def main(args: argparse.Namespace) -> None:
    if qdrant_binary() is None:
        sys.exit(f"bench-ingest: {missing_reason()}")
    rng = np.random.default_rng(11)
    vectors = rng.random((args.points, 100), dtype=np.float32)
    wide = rng.random((args.points_1536, 1536), dtype=np.float32)
    with scratch("chatmesh-bench-ingest-", args.keep) as home:
        keys = make_keys(home)
        service_keys = home / "keys"
        generate_key_pair(service_keys / "service_token.pem", service_keys / "service_token.pub.pem")
        user = str(uuid.uuid4())
        auth = (("authorization", f"Bearer {keys.token(keys.signer(), user).token}"),)
        qdrant = qdrant_node(home / "qdrant")
        async with nats_server(home) as nats, running(qdrant, ready_timeout_s=60):
            # First: the server part leaves Qdrant indexing its points in the background.
            embedded: list[float] = []
            edge: list[float] = []
            if "embedded" in args.parts:
                embedded_port = free_port()
                env = ingest_env(embedded_port, nats, keys, service_keys, home / "embedded")
                async with ingest_behind_gateway(home, env, embedded_port) as (target, pids):
                    channel = grpc.aio.insecure_channel(target)
                    stub = ingest_pb2_grpc.IngestServiceStub(channel)
                    for round_number in range(args.rounds):
                        name = f"load{round_number}"
                        await create(stub, auth, name, 100)
                        requests = requests_of(name, vectors, 100, 0)
                        meter = CpuMeter(pids, loops=("ingest",))
                        meter.start()
                        embedded.append(await through_gateway(stub, auth, requests, args.parallelism))
                        cores = meter.stop()
                        print(
                            "# embedded round cores: "
                            + " ".join(f"{k}={v:.2f}" for k, v in sorted(cores.items()) if k not in ("ours",)),
                            file=sys.stderr,
                        )
                        # The service is the embedded store's only writer, one event loop: its time per
                        # batch bounds the rate whatever the cores (at most 1,000 / it batches a second).
                        ms = 1000 / (embedded[-1] / 100)  # wall ms per batch: cores x this = CPU ms per batch
                        print(
                            f"# embedded round ms per batch: ingest_loop={cores['ingest_loop'] * ms:.2f} "
                            f"ingest={cores['ingest'] * ms:.2f} mesh={(cores['ours'] - cores['client']) * ms:.2f}",
                            file=sys.stderr,
                        )
                        # The baseline: the better of one caller and ``parallelism`` threads calling Edge.
                        alone = await asyncio.to_thread(direct_edge, home, vectors, 100, 1)
                        threads = await asyncio.to_thread(direct_edge, home, vectors, 100, args.parallelism)
                        edge.append(max(alone, threads))
                        print(
                            f"# round {round_number}: embedded {embedded[-1]:.0f} edge direct {alone:.0f} "
                            f"(one thread) {threads:.0f} ({args.parallelism} threads) points/s; "
                            f"Edge alone {100_000 / edge[-1]:.2f} ms per batch of 100",
                            file=sys.stderr,
                        )
                    await channel.close()
            ours: list[float] = []
            direct: list[float] = []
            wide_rate = 0.0
            if "server" in args.parts:
                server_port = free_port()
                env = ingest_env(server_port, nats, keys, service_keys, home / "server", QDRANT_URL=qdrant.url)
                async with ingest_behind_gateway(home, env, server_port) as (target, _):
                    channel = grpc.aio.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20)])
                    stub = ingest_pb2_grpc.IngestServiceStub(channel)
                    for round_number in range(args.rounds):
                        name = f"load{round_number}"
                        await create(stub, auth, name, 100)
                        requests = requests_of(name, vectors, 100, 0)
                        ours.append(await through_gateway(stub, auth, requests, args.parallelism))
                        direct.append(await asyncio.to_thread(direct_server, qdrant, vectors, 100, args.parallelism))
                        print(
                            f"# round {round_number}: server {ours[-1]:.0f} direct {direct[-1]:.0f} points/s",
                            file=sys.stderr,
                        )
                    await create(stub, auth, "wide", 1536)
                    wide_rate = await through_gateway(stub, auth, requests_of("wide", wide, 100, 0), args.parallelism)
                    await channel.close()
            if "documents" in args.parts:
                docs_rate, tokens_rate, alone_rate = await documents(home, nats, keys, service_keys, auth, args)
    # The baselines' own figures, as comments (stderr): the ratios below are made of them.
    for key, values in (("direct", direct), ("embedded", embedded), ("edge_direct", edge)):
        if values:
            print(
                f"# {key}_points_per_s={statistics.median(values):.4g} rounds={[round(v) for v in values]}",
                file=sys.stderr,
            )
    if ours:
        print(f"# points_per_s rounds={[round(v) for v in ours]}", file=sys.stderr)
        emit("points_per_s", statistics.median(ours))
        emit("points_per_s_1536", wide_rate)
    if embedded:
        emit("ratio_embedded_vs_direct", statistics.median(embedded) / statistics.median(edge))
    if "documents" in args.parts:
        emit("docs_per_s", docs_rate)
        emit("embed_tokens_per_s", tokens_rate)
        emit("embed_alone_tokens_per_s", alone_rate)
    if ours:
        emit("ratio_vs_direct", statistics.median(ours) / statistics.median(direct))


async def documents(
    home: Path, nats: Nats, keys: Keys, service_keys: Path, auth: tuple[tuple[str, str], ...], args: argparse.Namespace
) -> tuple[float, float, float]:
    """(docs/s through the gateway, the embedding tokens/s that makes, tokens/s of inference.Embed alone)."""
    inference_port = free_port()
    inference_env = service_env(
        "inference", inference_port, nats, None, keys,
        {"SERVICE_TOKEN_PUBLIC_KEY_FILE": str(service_keys / "service_token.pub.pem"), "HISTORY_TARGET": "127.0.0.1:9",
         "QUEUE_SIZE": "64"},
    )  # fmt: skip
    texts = [DOC.format(i=i) for i in range(args.docs)]
    batches = [texts[i : i + 16] for i in range(0, len(texts), 16)]
    async with service("inference", home, inference_env, inference_port) as inference:
        port = free_port()
        env = ingest_env(port, nats, keys, service_keys, home / "docs", INFERENCE_TARGET=inference.target)
        async with ingest_behind_gateway(home, env, port) as (target, _):
            channel = grpc.aio.insecure_channel(target)
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            embed = inference_pb2_grpc.InferenceServiceStub(grpc.aio.insecure_channel(inference.target))
            await create(stub, auth, "docs", MODEL_DIM, MODEL)
            await embed.Embed(
                inference_pb2.EmbedRequest(texts=texts[:1], model=MODEL), metadata=auth, timeout=300
            )  # the model loads
            docs_s: list[float] = []
            alone_s: list[float] = []
            tokens = 0
            for _ in range(args.rounds):
                started = time.perf_counter()
                for chunk in batches:
                    await stub.Upsert(
                        pb.UpsertRequest(collection="docs", documents=[pb.Document(text=t) for t in chunk]),
                        metadata=auth,
                    )
                docs_s.append(time.perf_counter() - started)
                started = time.perf_counter()
                tokens = 0
                for chunk in batches:
                    answer = await embed.Embed(  # the collection's model (the default is another one)
                        inference_pb2.EmbedRequest(texts=chunk, model=MODEL), metadata=auth, timeout=300
                    )
                    tokens += answer.prompt_tokens
                alone_s.append(time.perf_counter() - started)
            await channel.close()
    docs = statistics.median(docs_s)
    return len(texts) / docs, tokens / docs, tokens / statistics.median(alone_s)


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cli.add_argument("--points", type=int, default=100_000, help="points per load round (dimension 100)")
    cli.add_argument("--points-1536", type=int, default=10_000, help="points of the 1,536-dimension run")
    cli.add_argument("--docs", type=int, default=96, help="documents per embedding round")
    cli.add_argument("--parallelism", type=int, default=4, help="batches in flight, ours and the baseline's")
    cli.add_argument("--rounds", type=int, default=2, help="alternating rounds of ours and the baselines")
    cli.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, data)")
    cli.add_argument(
        "--parts",
        type=lambda text: set(text.split(",")),
        default={"server", "embedded", "documents"},
        help="which parts to run, comma-separated (server,embedded,documents; default all)",
    )
    asyncio.run(main(cli.parse_args()))
