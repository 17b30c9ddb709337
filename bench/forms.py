"""make bench-forms: Submit through the gateway with every consumer running, against raw JetStream publishes.

What runs: a fresh nats-server (JetStream, the mesh's 1 s fsync interval) and Cassandra
(throughput tuning), the forms service (``python -m services.forms``) and a forms worker
(``python -m services.forms.worker``: store, sheets, screen and confirm; ``--workers N`` for
more, one consumer group) as their own processes with the environment mesh/supervisor.py
gives them (per-user submit limits raised out of the way), and Envoy in front (the
production rendering; its rate limiter given a bucket the benchmark cannot drain). The
client is this process: grpc.aio over h2c to the gateway, CLIENTS users each with their own
access token.

Warm-up (not counted): rounds of the closed-loop load until Cassandra's JIT compilers
settle (bench.harness.warm_until_jit_settles), then until the consumers' backlogs drain.

(a) The seed's load test: CLIENTS concurrent clients (1,000) each submit SUBMITS (5)
    times, one after the other (closed loop): ``avg_ms``, ``p50_ms``, ``p99_ms`` of the
    Submit calls and ``submits_per_s`` (submissions over the wall time), beside
    ``seed_avg_ms=1858`` (the Kafka pipeline's load test on one container).
(b) Open loop: RATE (500) submissions a second for DURATION (30) s, each sent at its
    scheduled time whatever the answers: ``open_p99_ms`` of the calls.
(c) ``processed_p99_ms``: for every submission of (b), from the client receiving
    Submit's answer to "processed": the latest commit time among the required consumers'
    status rows (``submission_status.updated_at``, written by each consumer right after its
    effect was durable), read from CQL once every backlog drained. Same machine, same clock.
(d) Baseline, same run, same nats-server, same concurrency: raw nats-py ``js.publish``
    (awaited acks) of the same serialized submissions, with a Nats-Msg-Id each, by CLIENTS
    concurrent publishers x SUBMITS each, to a stream of their own. Last line:
    ``ratio_vs_raw_jetstream`` = (a)'s submits_per_s over the raw publishes per second.

The client's garbage collector is off during (a), (b) and (d) (see ``collector_off``: its
pauses stalled every call in flight and were counted as latency); stderr shows what pauses
remain. ``--py-spy PATH`` records the service's and the worker's stacks per phase.

stdout has exactly those lines; the rest (CPU per process, rates, errors, set-up times)
goes to stderr as ``# key=value``, among them what a submission costs in CPU per process
and the cores the closed loop's 2,000/s goal would take at that cost (``cpu_per_submit``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import os
import resource
import sys
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Iterator, Sequence
from datetime import UTC
from pathlib import Path

import grpc
import nats
from nats.js.api import StreamConfig

from bench.harness import (
    CpuMeter,
    Keys,
    cassandra_node,
    dependency_pids,
    gateway,
    make_keys,
    nats_server,
    scratch,
    service,
    service_env,
    warm_until_jit_settles,
)
from bench.stats import percentile
from chatmesh.forms.v1 import forms_pb2 as fpb
from chatmesh.forms.v1 import forms_pb2_grpc
from mesh.deps.base import ProcessSpec, free_port
from mesh.deps.process import launch, terminate
from services.history.streams import STREAMS as CHAT_STREAMS
from services.runtime.cql import CqlSession, CqlSettings

SEED_AVG_MS = 1858
GOAL_SUBMITS_PER_S = 2000
"""The closed loop's goal in throughput: avg_ms <= 500 with 1,000 clients is 2,000/s (Little's law)."""
CHANNELS = 8
REQUIRED = ("store", "sheets", "screen")

FIELDS = [
    fpb.Field(key="name", label="Name", type=fpb.FIELD_TYPE_TEXT, required=True),
    fpb.Field(key="email", label="Email", type=fpb.FIELD_TYPE_EMAIL, required=True),
    fpb.Field(key="message", label="Message", type=fpb.FIELD_TYPE_LONG_TEXT),
    fpb.Field(key="age", label="Age", type=fpb.FIELD_TYPE_INTEGER, limits=fpb.FieldLimits(min_value=0, max_value=150)),
    fpb.Field(key="topic", label="Topic", type=fpb.FIELD_TYPE_CHOICE,
              limits=fpb.FieldLimits(choices=["sales", "support", "other"])),
]  # fmt: skip


def note(key: str, value: float | int | str) -> None:
    """A diagnostic line on stderr."""
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    print(f"# {key}={text}", file=sys.stderr, flush=True)


def emit(key: str, value: float | int) -> None:
    """One of the issue's lines on stdout."""
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    print(f"{key}={text}", flush=True)


def values(i: int) -> dict[str, fpb.FieldValue]:
    """A typical contact-form submission (about 200 bytes serialized)."""
    return {
        "name": fpb.FieldValue(string_value=f"Visitor {i}"),
        "email": fpb.FieldValue(string_value=f"visitor{i}@Example.org"),
        "message": fpb.FieldValue(string_value="Hello, I would like to know more about your product.\nThanks!"),
        "age": fpb.FieldValue(integer_value=20 + i % 60),
        "topic": fpb.FieldValue(choices=fpb.ChoiceList(values=["sales"])),
    }


class Clients:
    """CLIENTS users, each with a token, spread over a few channels to the gateway."""

    def __init__(self, keys: Keys, port: int, count: int) -> None:
        signer = keys.signer()
        self.tokens = [
            (("authorization", f"Bearer {keys.token(signer, str(uuid.uuid4())).token}"),) for _ in range(count)
        ]
        self.channels = [
            grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(CHANNELS)
        ]
        self.stubs = [forms_pb2_grpc.FormsServiceStub(c) for c in self.channels]
        self.form_id = ""
        self.errors: dict[str, int] = {}

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()

    async def submit(self, client: int, i: int) -> tuple[float, float, str]:
        """One Submit: (latency s, answer time unix s, submission id or "")."""
        request = fpb.SubmitRequest(form_id=self.form_id, idempotency_key=uuid.uuid4().hex, values=values(i))
        started = time.perf_counter()
        try:
            reply = await self.stubs[client % CHANNELS].Submit(request, metadata=self.tokens[client], timeout=30)
            sid = reply.submission_id
        except grpc.aio.AioRpcError as err:
            self.errors[err.code().name] = self.errors.get(err.code().name, 0) + 1
            if self.errors[err.code().name] == 1:
                note(f"first_{err.code().name}", (err.details() or "")[:120])
            sid = ""
        return time.perf_counter() - started, time.time(), sid

    async def closed_loop(self, clients: int, each: int, offset: int = 0) -> tuple[list[float], float]:
        """``clients`` clients submitting ``each`` times one after another: latencies and wall seconds."""
        latencies: list[float] = []

        async def one(client: int) -> None:
            for k in range(each):
                latency, _, sid = await self.submit(client, offset + client * each + k)
                if sid:
                    latencies.append(latency)

        started = time.perf_counter()
        await asyncio.gather(*(one(c) for c in range(clients)))
        return latencies, time.perf_counter() - started

    async def open_loop(self, rate: float, duration: float) -> tuple[list[float], dict[str, float], float]:
        """``rate`` submits a second for ``duration`` s at their scheduled times: latencies, answer times by id."""
        latencies: list[float] = []
        answered: dict[str, float] = {}
        tasks: list[asyncio.Task[None]] = []
        lag = 0.0

        async def one(n: int) -> None:
            latency, at, sid = await self.submit(n % len(self.tokens), n)
            if sid:
                latencies.append(latency)
                answered[sid] = at

        loop = asyncio.get_running_loop()
        start = loop.time() + 0.05
        for n in range(int(rate * duration)):
            due = start + n / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                lag = max(lag, -delay)
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
        return latencies, answered, lag


async def forms_worker(
    stack: contextlib.AsyncExitStack, env: dict[str, str], home: Path, number: int = 1
) -> asyncio.subprocess.Process:
    """Forms worker ``number`` with the service's ``env``, stopped with ``stack``; returns once it serves metrics."""
    worker_port = free_port()
    worker_env = {**env, "CHATMESH_FORMS_PORT": "0", "CHATMESH_FORMS_METRICS_PORT": str(worker_port),
                  "CHATMESH_FORMS_WORKER_NAME": f"forms-worker-{number}"}  # fmt: skip
    spec = ProcessSpec(
        name=f"forms-worker-{number}",
        argv=[sys.executable, "-m", "services.forms.worker"],
        env=worker_env,
        cwd=Path(__file__).resolve().parent.parent,
        log_path=home / "logs" / f"forms-worker-{number}.log",
    )
    worker = await launch(spec)
    stack.push_async_callback(terminate, worker, 15.0)
    for _ in range(600):
        try:
            await asyncio.to_thread(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{worker_port}/metrics", timeout=1).read()
            )
            break
        except OSError:
            await asyncio.sleep(0.1)
    return worker


async def backlog(admin: forms_pb2_grpc.FormsServiceStub, auth: tuple[tuple[str, str]]) -> int:
    """Submissions not yet finished by some consumer."""
    stats = await admin.ConsumerStats(fpb.ConsumerStatsRequest(), metadata=auth)
    return sum(c.pending + c.ack_pending for c in stats.consumers)


async def drain(admin: forms_pb2_grpc.FormsServiceStub, auth: tuple[tuple[str, str]], limit_s: float) -> float:
    """Wait until every consumer caught up; the seconds it took."""
    started = time.perf_counter()
    while await backlog(admin, auth) and time.perf_counter() - started < limit_s:
        await asyncio.sleep(0.2)
    return time.perf_counter() - started


async def processed_latencies(cql: CqlSession, answered: dict[str, float]) -> tuple[list[tuple[float, float]], int]:
    """Per submission, (the answer's time, the last required commit minus it (s)); and how many are not processed."""
    latencies: list[tuple[float, float]] = []
    missing = 0
    ids = list(answered)
    for start in range(0, len(ids), 100):
        chunk = [uuid.UUID(s) for s in ids[start : start + 100]]
        rows = await cql.execute(
            "SELECT submission_id, consumer, state, updated_at FROM submission_status WHERE submission_id IN ?",
            (chunk,),
            prepare=True,
        )
        done: dict[str, dict[str, float]] = {}
        for row in rows:
            if row["consumer"] in REQUIRED and row["state"] == fpb.CONSUMER_STATE_DONE:
                at = row["updated_at"].replace(tzinfo=UTC)
                done.setdefault(str(row["submission_id"]), {})[row["consumer"]] = at.timestamp()
        for sid in ids[start : start + 100]:
            commits = done.get(sid, {})
            if len(commits) < len(REQUIRED):
                missing += 1
                continue
            latencies.append((answered[sid], max(commits.values()) - answered[sid]))
    return latencies, missing


def p50_per_interval(timed: Sequence[tuple[float, float]], interval_s: float) -> list[float]:
    """The median latency of each ``interval_s`` of answers, in order: a backlog climbs, a stall is a bump."""
    first = min((at for at, _ in timed), default=0.0)
    buckets: dict[int, list[float]] = {}
    for at, latency in timed:
        buckets.setdefault(int((at - first) // interval_s), []).append(latency)
    return [percentile(b, 0.5) for _, b in sorted(buckets.items())]


async def raw_baseline(url: str, payloads: list[bytes], clients: int, each: int) -> float:
    """Raw nats-py JetStream publishes with acks, ``clients`` at once, ``each`` one after another: per second."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        with contextlib.suppress(Exception):
            await js.delete_stream("BENCH_RAW")
        await js.add_stream(StreamConfig(name="BENCH_RAW", subjects=["bench_raw.>"], duplicate_window=120))

        async def one(client: int) -> None:
            for k in range(each):
                n = client * each + k
                await js.publish(
                    f"bench_raw.{uuid.uuid4()}", payloads[n % len(payloads)], headers={"Nats-Msg-Id": uuid.uuid4().hex}
                )

        await asyncio.gather(*(one(c) for c in range(clients // 4)))  # warm-up
        started = time.perf_counter()
        await asyncio.gather(*(one(c) for c in range(clients)))
        return clients * each / (time.perf_counter() - started)
    finally:
        await nc.close()


@contextlib.contextmanager
def collector_off() -> Iterator[None]:
    """The client's garbage collector off for one measured phase (collected before and after).

    The client is one Python process standing in for a thousand devices: with the collector
    on, its pauses (full passes over every call in flight: up to 2.4 s each, 10 s in all
    during the open loop, measured) stalled every call at once and were counted as the
    service's latency, and the open loop's sender fell seconds behind its schedule. The
    garbage of one phase (its calls' reference cycles) fits in memory.
    """
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()
        gc.collect()


class GcPauses:
    """The client's garbage-collector pauses (a pause stalls every call in flight: it is in the latencies)."""

    def __init__(self) -> None:
        self.max_s = 0.0
        self.total_s = 0.0
        self.full = 0
        self._started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        self.max_s = max(self.max_s, pause)
        self.total_s += pause
        self.full += info.get("generation") == 2

    def reset(self) -> None:
        self.max_s = self.total_s = 0.0
        self.full = 0

    def seen(self) -> dict[str, float | int]:
        """The pauses since the last reset: longest and total (ms), full collections."""
        return {"max_ms": self.max_s * 1000, "total_ms": self.total_s * 1000, "full": self.full}


class Spies:
    """py-spy recording the forms service and the worker during one phase (``--py-spy``; not a requirement)."""

    def __init__(self, py_spy: str, out: Path, pids: dict[str, int]) -> None:
        self._py_spy, self._out, self._pids = py_spy, out, pids
        self._procs: list[asyncio.subprocess.Process] = []

    async def start(self, phase: str) -> None:
        if not self._py_spy:
            return
        self._out.mkdir(parents=True, exist_ok=True)
        for name in ("forms", "worker"):
            self._procs.append(
                await asyncio.create_subprocess_exec(
                    self._py_spy, "record", "--pid", str(self._pids[name]), "--format", "raw", "--rate", "100",
                    "--nonblocking", "--output", str(self._out / f"{phase}-{name}.txt"),
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                )
            )  # fmt: skip

    async def stop(self) -> None:
        for proc in self._procs:
            proc.send_signal(2)
            await proc.wait()
        self._procs = []


def cpu_per_submit(cores: dict[str, float], submits_per_s: float, goal: bool = True) -> dict[str, float]:
    """What a submission costs in CPU, and the cores the closed loop's goal would take at that cost.

    ``cpu_ms_per_submit_<name>`` for every process measured (cores over submissions per
    second); ``_mesh`` is everything but the client (the service, worker, render process,
    Envoy, NATS and Cassandra: what a deployment runs); ``cores_for_goal_mesh`` is that cost
    at GOAL_SUBMITS_PER_S, and ``_with_client`` adds this client's share (on one machine
    the load generator competes for the same cores). A linear estimate from a saturated
    machine: what the goal needs in cores, not a promise that more cores scale perfectly.
    Without ``goal`` (the open loop, whose goals are latencies) only the costs.
    """
    rate = max(1e-9, submits_per_s)
    skip = {"machine", "other", "ours"}
    figures = {f"cpu_ms_per_submit_{name}": value / rate * 1000
               for name, value in cores.items() if name not in skip and not name.endswith("_loop")}  # fmt: skip
    ours = cores.get("ours", 0.0)
    mesh = ours - cores.get("client", 0.0)
    figures["cpu_ms_per_submit_mesh"] = mesh / rate * 1000
    if goal:
        figures["cores_for_goal_mesh"] = mesh / rate * GOAL_SUBMITS_PER_S
        figures["cores_for_goal_with_client"] = ours / rate * GOAL_SUBMITS_PER_S
    return figures


async def main(args: argparse.Namespace) -> None:
    """Start everything, run the phases, print the figures, stop everything."""
    began = time.perf_counter()
    async with contextlib.AsyncExitStack() as stack:
        home = stack.enter_context(scratch("chatmesh-bench-forms-", args.keep))
        keys = make_keys(home)
        nats_dep = await stack.enter_async_context(nats_server(home))
        cassandra = await stack.enter_async_context(cassandra_node(home))
        nc = await nats.connect(nats_dep.url)
        for chat in CHAT_STREAMS:  # the confirm consumer publishes on history's CHAT stream
            await nc.jetstream().add_stream(chat)
        await nc.close()
        port = free_port()
        extra = {
            "SUBMITS_PER_SECOND": "100000",
            "SUBMIT_BURST": "1000000",
            "SHEETS__DIRECTORY": str(home / "sheets"),
            "CQL__KEYSPACE": "chatmesh",
        }
        env = service_env("forms", port, nats_dep, cassandra, keys, extra)
        forms = await stack.enter_async_context(service("forms", home, env, port))
        workers = [await forms_worker(stack, env, home, n) for n in range(1, args.workers + 1)]
        gw = await stack.enter_async_context(gateway(home, [forms]))
        note("startup_s", time.perf_counter() - began)

        clients = Clients(keys, gw.port, args.clients)
        stack.push_async_callback(clients.close)
        owner = clients.tokens[0]
        admin = clients.stubs[0]
        form = await admin.CreateForm(fpb.CreateFormRequest(name="contact", title="Contact us", fields=FIELDS),
                                      metadata=owner)  # fmt: skip
        clients.form_id = form.form.form_id
        for _ in range(50):  # the worker's consumers registered
            listed = await admin.ListConsumers(fpb.ListConsumersRequest(), metadata=owner)
            if {"store", "sheets", "screen", "confirm"} <= {c.name for c in listed.consumers}:
                break
            await asyncio.sleep(0.2)

        pids: dict[str, int] = {"forms": forms.proc.pid, "worker": workers[0].pid, "client": os.getpid()}
        pids.update({f"worker{n}": w.pid for n, w in enumerate(workers[1:], start=2)})
        others = [f"worker{n}" for n in range(2, len(workers) + 1)]
        renders = [f"{name}_children" for name in ("worker", *others)]  # each worker's render process
        pids.update(dependency_pids(home))
        rounds = itertools.count(1)

        def warm_round() -> Awaitable[object]:
            return clients.closed_loop(args.clients // 2, 4, offset=1_000_000 * next(rounds))

        warm_s, jit = await warm_until_jit_settles(pids["cassandra"], warm_round, limit_s=args.warmup_limit)
        note("warmup_s", warm_s)
        note("warmup_jit_cores", jit)
        note("warmup_drain_s", await drain(admin, owner, 120))

        spies = Spies(args.py_spy, Path(args.profile_dir).resolve(), pids)

        pauses = GcPauses()

        # (a) closed loop
        clients.errors.clear()
        await spies.start("closed")
        meter = CpuMeter(pids, loops=("forms", "worker", "client"), children=("worker", *others))
        through = CpuMeter(pids, children=("worker", *others))  # until the backlogs drained: the work done
        with collector_off():
            pauses.reset()  # what the phase itself saw (not collector_off's own collections)
            meter.start()
            through.start()
            latencies, wall = await clients.closed_loop(args.clients, args.submits)
            cpu = meter.stop()
            gc_seen = pauses.seen()
        await spies.stop()
        closed = {
            "avg_ms": sum(latencies) / max(1, len(latencies)) * 1000,
            "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000,
            "submits_per_s": len(latencies) / wall,
        }
        for key, value in gc_seen.items():
            note(f"closed_client_gc_{key}", value)
        note("closed_ok", len(latencies))
        note("closed_errors", sum(clients.errors.values()))
        note("closed_error_codes", ",".join(f"{k}:{v}" for k, v in sorted(clients.errors.items())) or "-")
        for name in ("forms", "forms_loop", "worker", "worker_loop", *others, *renders, "envoy", "nats",
                     "cassandra", "client", "client_loop", "other", "machine"):  # fmt: skip
            note(f"closed_cpu_cores_{name}", cpu.get(name, 0.0))
        note("closed_drain_s", await drain(admin, owner, 300))
        done = through.stop()
        for key, value in cpu_per_submit(done, len(latencies) / through.seconds).items():
            note(f"closed_{key}", value)

        # (b) open loop
        clients.errors.clear()
        await spies.start("open")
        meter = CpuMeter(pids, loops=("forms", "worker", "client"), children=("worker", *others))
        meter.start()
        with collector_off():
            pauses.reset()
            open_latencies, answered, lag = await clients.open_loop(args.rate, args.duration)
            gc_seen = pauses.seen()
        await spies.stop()
        note("open_drain_s", await drain(admin, owner, 300))
        cpu = meter.stop()
        note("open_ok", len(open_latencies))
        note("open_errors", sum(clients.errors.values()))
        note("open_error_codes", ",".join(f"{k}:{v}" for k, v in sorted(clients.errors.items())) or "-")
        note("open_sender_lag_max_ms", lag * 1000)
        for key, value in gc_seen.items():
            note(f"open_client_gc_{key}", value)
        note("open_p50_ms", percentile(open_latencies, 0.5) * 1000)
        for name in ("forms", "worker", *others, *renders, "envoy", "nats", "cassandra", "client", "other",
                     "machine"):  # fmt: skip
            note(f"open_cpu_cores_{name}", cpu.get(name, 0.0))

        for key, value in cpu_per_submit(cpu, len(open_latencies) / meter.seconds, goal=False).items():
            note(f"open_{key}", value)

        # (c) processed
        cql = await CqlSession.connect(CqlSettings(hosts=[cassandra.config.host], port=cassandra.config.native_port))
        stack.push_async_callback(cql.close)
        timed, missing = await processed_latencies(cql, answered)
        processed = [latency for _, latency in timed]
        note("processed_missing", missing)
        note("processed_p50_ms", percentile(processed, 0.5) * 1000)
        note("processed_p50_ms_per_5s", ",".join(f"{p * 1000:.0f}" for p in p50_per_interval(timed, 5.0)))

        # (d) raw JetStream
        payloads = [
            fpb.Submission(submission_id=str(uuid.uuid4()), form_id=clients.form_id, form_version=1,
                           values=values(i), idempotency_key=uuid.uuid4().hex).SerializeToString()
            for i in range(100)
        ]  # fmt: skip
        with collector_off():  # as for (a): the same client process, the same conditions
            raw = await raw_baseline(nats_dep.url, payloads, args.clients, args.submits)
        note("client_max_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        note("raw_jetstream_per_s", raw)
        note("total_s", time.perf_counter() - began)
        await asyncio.sleep(0)

    for key, value in closed.items():
        emit(key, value)
    emit("seed_avg_ms", SEED_AVG_MS)
    emit("open_p99_ms", percentile(open_latencies, 0.99) * 1000)
    emit("processed_p99_ms", percentile(processed, 0.99) * 1000 if processed else float("nan"))
    emit("ratio_vs_raw_jetstream", closed["submits_per_s"] / raw)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000, help="concurrent clients (closed loop, raw baseline)")
    parser.add_argument("--submits", type=int, default=5, help="submissions each client makes, one after another")
    parser.add_argument("--rate", type=float, default=500.0, help="open loop: submissions per second")
    parser.add_argument("--duration", type=float, default=30.0, help="open loop: seconds")
    parser.add_argument("--workers", type=int, default=1, help="forms worker processes (one consumer group)")
    parser.add_argument("--warmup-limit", type=float, default=90.0, help="seconds of warm-up rounds at most")
    parser.add_argument("--py-spy", default="", help="path of py-spy: profile the service and the worker per phase")
    parser.add_argument("--profile-dir", default="forms-profiles", help="where py-spy writes collapsed stacks")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory (logs, data) for a look after")
    asyncio.run(main(parser.parse_args()))
