"""Scale-out: discovery time of new replicas, and a rolling restart of every service under steady load.

Starts the whole mesh the way users do (`python -m mesh up --detach`, on free ports, state
under a temporary folder) with ``--replicas`` (default two of every service but ingest, whose
embedded store has one owner), then:

1. **Discovery** (``--joins`` times): a presence replica is added (`mesh scale`) while a
   client calls presence through the gateway; the time from the replica's health turning
   SERVING (the supervisor watches it) to the first request Envoy routes to it (its
   ``rq_total`` in Envoy's admin ``/clusters``, polled every 5 ms; the client sends about 100
   calls/s, so the figure includes up to ~10 ms of waiting for the next call); then it is
   removed again (drained: no call may fail).
2. **Steady** load (tests/e2e/scale_load.py: pairs of users sending, paging history, with
   Connect streams open) for ``--steady-s`` seconds: calls/s.
3. **Rolling restart** of every service (`python -m mesh restart --rolling`) under the same
   load: calls made and failed meanwhile, then every stream's events against what was sent.

Prints ``key=value`` lines; the last is ``ratio_rolling_vs_steady`` (calls/s during the
rolling restart over calls/s before it). Goals: discovery p99 <= 1,000 ms, no failed call,
no missing or duplicated event, ratio >= 0.9.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from bench.harness import scratch
from bench.stats import percentile
from chatmesh.client import Client
from chatmesh.presence.v1 import presence_pb2, presence_pb2_grpc
from mesh.control import ask_supervisor
from mesh.xds.probe import wait_first_request
from tests.conftest_mesh import mesh_environment
from tests.e2e.scale_load import PASSWORD, SteadyLoad

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REPLICAS = "session=2,history=2,presence=2,inference=2,forms=2"


def _mesh(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mesh", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def _ask(state: Path, request: dict[str, str]) -> dict[str, object]:
    """One request to the supervisor's control socket (what `python -m mesh scale` sends)."""
    answer = ask_supervisor(state / "run", request, timeout_s=300)
    if not answer.get("ok"):
        raise RuntimeError(f"supervisor: {answer.get('error')}")
    return answer


@contextlib.asynccontextmanager
async def presence_calls(
    target: str, token: str, concurrency: int = 4, pause_s: float = 0.03
) -> AsyncIterator[Counter[str]]:
    """Unary presence calls through the gateway until the block ends (about 100/s: under the
    gateway's 200/s per user); their codes."""
    codes: Counter[str] = Counter()
    stop = asyncio.Event()
    async with grpc.aio.insecure_channel(target) as channel:
        stub = presence_pb2_grpc.PresenceServiceStub(channel)
        auth = (("authorization", f"Bearer {token}"),)

        async def loop() -> None:
            while not stop.is_set():
                try:
                    await stub.GetPresence(
                        presence_pb2.GetPresenceRequest(user_ids=[str(uuid.uuid4())]), metadata=auth, timeout=5
                    )
                    codes["OK"] += 1
                except grpc.aio.AioRpcError as exc:
                    codes[exc.code().name] += 1
                await asyncio.sleep(pause_s)

        tasks = [asyncio.ensure_future(loop()) for _ in range(concurrency)]
        try:
            yield codes
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)


async def discovery(state: Path, target: str, admin_port: int, joins: int) -> tuple[list[float], Counter[str]]:
    """Milliseconds from a new presence replica's SERVING to its first routed request, ``joins`` times."""
    async with Client(target) as client:
        account = await client.register(f"scale{uuid.uuid4().hex[:12]}", PASSWORD, "bench")
        del account
        token = client.tokens.access_token  # type: ignore[union-attr]
    samples: list[float] = []
    async with presence_calls(target, token) as codes:
        for _ in range(joins):
            added = await asyncio.to_thread(_ask, state, {"op": "add", "service": "presence"})
            serving_at = float(added["serving_at"])  # type: ignore[arg-type]
            routed = await wait_first_request(admin_port, "presence", f"127.0.0.1:{added['port']}", 30, poll_s=0.005)
            routed_at = time.time() - (time.monotonic() - routed)
            samples.append((routed_at - serving_at) * 1000)
            await asyncio.to_thread(_ask, state, {"op": "remove", "service": "presence"})
    return samples, codes


async def rolling(env: dict[str, str], target: str, steady_s: float) -> dict[str, float]:
    """Steady load, then a rolling restart of every service under it; the figures."""
    load = SteadyLoad(target)
    await load.setup()
    load.start()
    try:
        await asyncio.sleep(5)  # warm
        start = time.monotonic()
        await asyncio.sleep(steady_s)
        steady_end = time.monotonic()
        steady_calls, steady_failed = load.window(start, steady_end)
        restart = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mesh", "restart", "--rolling", cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        rolling_start = time.monotonic()
        output, _ = await restart.communicate()
        rolling_end = time.monotonic()
        if restart.returncode != 0:
            raise RuntimeError(f"rolling restart failed: {output.decode()[-2000:]}")
        for line in output.decode().splitlines():
            print(f"# {line}", file=sys.stderr)
        rolling_calls, rolling_failed = load.window(rolling_start, rolling_end)
        await load.stop()
        await load.settle()
        check = load.check()
        for call in rolling_failed[:20]:
            print(
                f"# failed during the rolling restart: {call.method} {call.code.name} {call.details}", file=sys.stderr
            )
    finally:
        await load.close()
    steady_rate = steady_calls / (steady_end - start)
    rolling_rate = rolling_calls / (rolling_end - rolling_start)
    return {
        "steady_s": round(steady_end - start, 1),
        "calls_steady": steady_calls,
        "failed_calls_steady": len(steady_failed),
        "steady_calls_per_s": round(steady_rate, 1),
        "rolling_s": round(rolling_end - rolling_start, 1),
        "calls_rolling": rolling_calls,
        "failed_calls_rolling": len(rolling_failed),
        "rolling_calls_per_s": round(rolling_rate, 1),
        "stream_events_expected": check.expected,
        "stream_events_missing": check.missing,
        "stream_events_duplicated": check.duplicated,
        "stream_events_out_of_order": check.out_of_order,
        "message_events_inverted": check.message_inversions,
        "ratio_rolling_vs_steady": round(rolling_rate / steady_rate, 4) if steady_rate else 0.0,
    }


async def main(args: argparse.Namespace) -> None:
    with scratch("chatmesh-bench-scale-", args.keep) as home:
        state = home / "state"
        env = mesh_environment(state)
        env["CHATMESH_MESH_REPLICAS"] = args.replicas
        env["CHATMESH_MESH_INGEST_WORKERS"] = "1"
        started = time.monotonic()
        up = _mesh(env, "up", "--detach")
        if up.returncode != 0:
            raise SystemExit(f"mesh up failed: {up.stdout}\n{up.stderr}")
        try:
            print(f"replicas={args.replicas.replace(',', ';')}")
            print(f"up_s={time.monotonic() - started:.1f}")
            target = f"127.0.0.1:{env['CHATMESH_MESH_GATEWAY_PORT']}"
            admin_port = int(env["CHATMESH_MESH_GATEWAY_ADMIN_PORT"])
            samples, codes = await discovery(state, target, admin_port, args.joins)
            print(f"joins={len(samples)}")
            print(f"discovery_p50_ms={percentile(samples, 0.5):.1f}")
            print(f"discovery_p99_ms={percentile(samples, 0.99):.1f}")
            print(f"discovery_max_ms={max(samples):.1f}")
            print(f"presence_calls_during_joins={sum(codes.values())}")
            print(f"presence_failed_during_joins={sum(n for code, n in codes.items() if code != 'OK')}")
            for code, n in sorted(codes.items()):
                if code != "OK":
                    print(f"# presence calls during joins ended {code}: {n}", file=sys.stderr)
            figures = await rolling(env, target, args.steady_s)
            for key, value in figures.items():
                print(f"{key}={value}")
        finally:
            down = _mesh(env, "down", timeout=300)
            if down.returncode != 0:
                print(f"# mesh down: {down.stdout} {down.stderr}", file=sys.stderr)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", default=os.environ.get("CHATMESH_BENCH_REPLICAS", DEFAULT_REPLICAS))
    parser.add_argument("--joins", type=int, default=20)
    parser.add_argument("--steady-s", type=float, default=30.0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    asyncio.run(main(parser.parse_args()))
