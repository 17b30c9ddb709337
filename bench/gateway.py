"""make bench-gateway: what the Envoy gateway costs, measured against calling the service directly.

One upstream built with the real services.runtime (interceptors, token check, validation,
metrics) serves a cheap unary RPC (InferenceService/ListModels) and a server stream
(InferenceService/Generate, N small messages); the bench servicer does no model work, so
what differs between the paths is the gateway alone. The same client calls it straight,
through an Envoy without edge auth (``envoy``) and through one that verifies every token
at the edge (``edge``, as `make up` runs it), all h2c gRPC with the rendered production
config (per-client buckets too large to refuse anything, so their cost is in), interleaved
in rounds so machine noise hits all alike.

Prints, per path: unary calls per second (1 and CONCURRENCY in flight), p50/p99 latency,
stream messages per second; then the ratios to direct with and without edge auth, and what
edge auth costs: ``edge_auth_cost_unary_qps`` (the share of unary calls/s lost to it),
Envoy's own CPU per call with and without it (which machine noise moves far less than
calls/s) and its added p50. Last, the headline `ratio_unary_qps=<edge/direct>` at
CONCURRENCY in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from bench.stats import emit, median, percentile
from chatmesh.inference.v1 import inference_pb2 as pb
from chatmesh.inference.v1 import inference_pb2_grpc
from gateway.envoy import Envoy
from gateway.routes import RouteSpec
from gateway.settings import ClientBucket, ClientRateLimits, EdgeAuth, GatewaySettings, RateLimit, Upstream
from mesh.contracts import load
from mesh.deps.base import free_port
from mesh.deps.process import running
from services.runtime.interceptors import Context
from services.runtime.server import ServiceBinding, create_server
from services.runtime.settings import ServiceSettings
from services.runtime.tokens import Principal, TokenSigner, generate_key_pair, load_private_key

STREAM_MESSAGES = 4000
_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def envoy_pid(config_path: Path) -> int:
    """The pid of the envoy running ``config_path`` (found in /proc: the runner keeps it to itself)."""
    wanted = str(config_path).encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if wanted in argv and Path(argv[0].decode()).name == "envoy":
                return int(entry.name)
    raise RuntimeError(f"no envoy runs {config_path}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * _TICK_S


class BenchInferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    """Answers at once: ListModels with one model, Generate with `max_tokens` token messages."""

    async def ListModels(self, request: pb.ListModelsRequest, context: Context) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[pb.Model(name="bench", context_length=2048)])

    async def Generate(self, request: pb.GenerateRequest, context: Context) -> AsyncIterator[pb.GenerateResponse]:
        for index in range(request.sampling.max_tokens):
            yield pb.GenerateResponse(token=pb.Token(text="tok", token_id=index, index=index))


async def unary_round(
    stub: inference_pb2_grpc.InferenceServiceStub, auth: tuple[tuple[str, str], ...], calls: int, in_flight: int
) -> tuple[float, list[float]]:
    """``calls`` ListModels with ``in_flight`` workers; returns (calls/s, latencies in s)."""
    latencies: list[float] = []
    remaining = calls

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await stub.ListModels(pb.ListModelsRequest(), metadata=auth, timeout=10)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return calls / (time.perf_counter() - started), latencies


async def stream_round(
    stub: inference_pb2_grpc.InferenceServiceStub, auth: tuple[tuple[str, str], ...], streams: int
) -> float:
    """``streams`` Generate streams of 4,000 messages (the contract's max_tokens), one after another;
    returns messages/s."""
    request = pb.GenerateRequest(prompt="bench", sampling=pb.SamplingParams(max_tokens=STREAM_MESSAGES))
    started = time.perf_counter()
    count = 0
    for _ in range(streams):
        async for _ in stub.Generate(request, metadata=auth, timeout=60):
            count += 1
    assert count == streams * STREAM_MESSAGES, f"streams delivered {count} of {streams * STREAM_MESSAGES}"
    return count / (time.perf_counter() - started)


async def main(rounds: int, calls: int, in_flight: int, streams: int) -> None:
    """Run the benchmark and print its figures."""
    home = Path(tempfile.mkdtemp(prefix="chatmesh-bench-gateway-"))
    keys = (home / "key.pem", home / "key.pub.pem")
    generate_key_pair(*keys)
    token = TokenSigner(load_private_key(keys[0]), "chatmesh", 3600).sign(
        Principal(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()))
    )
    auth = (("authorization", f"Bearer {token.token}"),)
    contract = load("inference")
    settings = ServiceSettings(port=free_port(), token_public_key_file=keys[1], max_concurrent_rpcs=10_000)
    app = create_server(
        "inference",
        settings,
        [
            ServiceBinding(
                contract.full_name, inference_pb2_grpc.add_InferenceServiceServicer_to_server, BenchInferenceServicer()
            )
        ],
    )
    upstream = Upstream(name="inference", port=app.port, package=contract.package, health_service=contract.full_name)
    unlimited = ClientBucket(burst=10_000_000, per_second=10_000_000)

    def gateway(name: str, edge_auth: EdgeAuth | None) -> GatewaySettings:
        return GatewaySettings(
            port=free_port(),
            admin_port=free_port(),
            upstreams=[upstream],
            catalog=Upstream(name="catalog", port=app.port, health_service=""),
            # The bench measures the gateway's cost, not its rate limiters: buckets it can't drain.
            rate_limit=RateLimit(max_tokens=1_000_000, tokens_per_fill=1_000_000, fill_interval_s=1),
            client_rate_limits=ClientRateLimits(user=unlimited, address=unlimited),
            edge_auth=edge_auth,
            access_log_path=home / f"access-{name}.log",
        )

    plain = gateway("envoy", None)
    edge = gateway("edge", EdgeAuth(access_token_public_key_file=keys[1]))
    routes = [
        RouteSpec(
            package=contract.package,
            cluster="inference",
            streaming_methods=list(contract.server_streaming),
            public_methods=list(contract.public),
            optional_auth_methods=list(contract.optional_auth),
            internal_methods=list(contract.internal),
        )
    ]
    envoys = (Envoy(plain, routes, home / "envoy"), Envoy(edge, routes, home / "edge"))
    async with app, running(envoys[0], ready_timeout_s=60), running(envoys[1], ready_timeout_s=60):
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as direct_channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{plain.port}") as envoy_channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{edge.port}") as edge_channel,
        ):
            paths = {
                "direct": inference_pb2_grpc.InferenceServiceStub(direct_channel),
                "envoy": inference_pb2_grpc.InferenceServiceStub(envoy_channel),
                "edge": inference_pb2_grpc.InferenceServiceStub(edge_channel),
            }
            pids = {"envoy": envoy_pid(envoys[0].config_path), "edge": envoy_pid(envoys[1].config_path)}
            envoy_cpu: dict[str, list[float]] = {k: [] for k in pids}
            for stub in paths.values():  # warm up connections, Envoy's upstream pool, caches
                await unary_round(stub, auth, 300, in_flight)
                await stream_round(stub, auth, 1)
            serial: dict[str, list[float]] = {k: [] for k in paths}
            serial_qps: dict[str, list[float]] = {k: [] for k in paths}
            parallel_qps: dict[str, list[float]] = {k: [] for k in paths}
            stream_rate: dict[str, list[float]] = {k: [] for k in paths}
            for _ in range(rounds):
                for name, stub in paths.items():
                    qps, latencies = await unary_round(stub, auth, calls, 1)
                    serial[name].extend(latencies)
                    serial_qps[name].append(qps)
                    cpu_before = cpu_seconds(pids[name]) if name in pids else 0.0
                    qps, _ = await unary_round(stub, auth, calls, in_flight)
                    parallel_qps[name].append(qps)
                    if name in pids:
                        envoy_cpu[name].append((cpu_seconds(pids[name]) - cpu_before) / calls * 1e6)
                    stream_rate[name].append(await stream_round(stub, auth, streams))

    for name in paths:
        emit(f"{name}_unary_qps_1", median(serial_qps[name]))
        emit(f"{name}_unary_qps_{in_flight}", median(parallel_qps[name]))
        emit(f"{name}_unary_p50_ms", percentile(serial[name], 0.5) * 1000)
        emit(f"{name}_unary_p99_ms", percentile(serial[name], 0.99) * 1000)
        emit(f"{name}_stream_msgs_per_s", median(stream_rate[name]))
    direct_qps = median(parallel_qps["direct"])
    for name, label in (("envoy", "no_edge_auth"), ("edge", "edge_auth")):
        emit(f"ratio_unary_qps_1_{label}", median(serial_qps[name]) / median(serial_qps["direct"]))
        emit(f"ratio_stream_{label}", median(stream_rate[name]) / median(stream_rate["direct"]))
        emit(f"added_p50_ms_{label}", (percentile(serial[name], 0.5) - percentile(serial["direct"], 0.5)) * 1000)
        emit(f"ratio_unary_qps_{label}", median(parallel_qps[name]) / direct_qps)
    # Envoy's own CPU per unary call: what edge auth costs, whatever else the machine is doing.
    emit("envoy_cpu_us_per_call_no_edge_auth", median(envoy_cpu["envoy"]))
    emit("envoy_cpu_us_per_call_edge_auth", median(envoy_cpu["edge"]))
    emit("edge_auth_cpu_us_per_call", median(envoy_cpu["edge"]) - median(envoy_cpu["envoy"]))
    emit("edge_auth_cost_unary_qps", 1 - median(parallel_qps["edge"]) / median(parallel_qps["envoy"]))
    emit("edge_auth_added_p50_ms", (percentile(serial["edge"], 0.5) - percentile(serial["envoy"], 0.5)) * 1000)
    emit("ratio_unary_qps", median(parallel_qps["edge"]) / direct_qps)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per path")
    parser.add_argument("--calls", type=int, default=2000, help="unary calls per round")
    parser.add_argument("--in-flight", type=int, default=32, help="concurrent unary calls for the headline ratio")
    parser.add_argument("--streams", type=int, default=5, help="streams of 4,000 messages per round")
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.calls, args.in_flight, args.streams))
