"""The forms worker alone: CPU per submission of the worker, Cassandra and NATS, and the drain rate.

``python -m bench.forms_pipeline`` (under ``flock /tmp/chatmesh-bench.lock``): a fresh
nats-server and Cassandra (throughput tuning), one forms worker process (store, sheets,
screen, confirm) as in bench/forms.py, and no service or gateway: SUBMISSIONS valid
submissions are published straight to FORMS (as Submit publishes them, with signed-in
submitters so confirm publishes too), and the figures are taken from the first publish
until every consumer's backlog is empty. This is the part of ``make bench-forms`` that
limits ``processed_p99_ms``: whether one worker and Cassandra keep up with the open loop's
500 submissions a second next to the rest of the mesh.

stdout: ``processed_p50_ms`` / ``processed_p99_ms`` (publish to the ``forms.processed``
announcement, as a core-NATS subscriber hears it), ``drain_per_s`` (submissions over the
seconds until every backlog was empty) and ``<process>_cpu_ms_per_submission`` for
worker (``worker_children``: its render process), cassandra (``cassandra_jit``: its JIT
compilers' share of it) and nats; stderr has ``other`` (the machine's CPU outside these
processes, in cores) and set-up times.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from pathlib import Path

import nats
from google.protobuf.timestamp_pb2 import Timestamp

from bench.forms import FIELDS, forms_worker, values
from bench.harness import (
    CpuMeter,
    cassandra_node,
    dependency_pids,
    jit_compiler_cpu_s,
    make_keys,
    nats_server,
    scratch,
    service_env,
    warm_until_jit_settles,
)
from bench.stats import percentile
from chatmesh.forms.v1 import forms_pb2 as fpb
from mesh.deps.base import free_port
from services.forms.ids import uuid7
from services.forms.store import SCHEMA, FormStore
from services.forms.streams import FORMS_STREAM, STREAMS, submit_subject
from services.history.streams import STREAMS as CHAT_STREAMS
from services.runtime.bus import AckedPublisher
from services.runtime.cql import CqlSession, CqlSettings

CONSUMERS = ("store", "sheets", "screen", "confirm")


def note(key: str, value: float | int | str) -> None:
    """A diagnostic line on stderr."""
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    print(f"# {key}={text}", file=sys.stderr, flush=True)


async def backlog(js: object) -> int:
    """Deliveries not yet acknowledged by some consumer (pending + in flight)."""
    total = 0
    for name in CONSUMERS:
        info = await js.consumer_info(FORMS_STREAM, name)  # type: ignore[attr-defined]
        total += info.num_pending + info.num_ack_pending
    return total


async def publish(
    publisher: AckedPublisher, form_id: str, count: int, users: list[str], offset: int, rate: float = 0.0
) -> None:
    """``count`` submissions published as Submit publishes them, ``rate`` a second (0: 200 awaited at a time)."""
    step = max(1, int(rate / 20)) if rate else 200
    loop = asyncio.get_running_loop()
    began = loop.time()
    sends = []
    for start in range(0, count, step):
        if rate:
            delay = began + start / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        messages = []
        for i in range(start, min(count, start + step)):
            n = offset + i
            now_ms = int(time.time() * 1000)
            s = fpb.Submission(
                submission_id=uuid7(now_ms),
                form_id=form_id,
                form_version=1,
                submitter_user_id=users[n % len(users)],
                idempotency_key=uuid.uuid4().hex,
                values=values(n),
            )
            s.created_at.FromMilliseconds(now_ms)
            messages.append((submit_subject(s.submission_id), s.SerializeToString(), {"Nats-Msg-Id": uuid.uuid4().hex}))
        if rate:
            sends.append(asyncio.ensure_future(publisher.publish(messages, 30.0)))
        else:
            await publisher.publish(messages, 30.0)
    await asyncio.gather(*sends)


async def main(args: argparse.Namespace) -> None:
    """Start NATS, Cassandra and a worker, publish, wait for the drain, print the figures."""
    began = time.perf_counter()
    async with contextlib.AsyncExitStack() as stack:
        home = stack.enter_context(scratch("chatmesh-bench-forms-pipeline-", args.keep))
        keys = make_keys(home)
        nats_dep = await stack.enter_async_context(nats_server(home))
        cassandra = await stack.enter_async_context(cassandra_node(home))
        nc = await nats.connect(nats_dep.url)
        stack.push_async_callback(nc.close)
        js = nc.jetstream()
        for stream in (*CHAT_STREAMS, *STREAMS):
            await js.add_stream(stream)
        cql = await CqlSession.connect(CqlSettings(hosts=[cassandra.config.host], port=cassandra.config.native_port),
                                       SCHEMA)  # fmt: skip
        stack.push_async_callback(cql.close)
        form_id, owner = str(uuid.uuid4()), str(uuid.uuid4())
        created = Timestamp()
        created.GetCurrentTime()
        await FormStore(cql).put_new_form(
            fpb.Form(form_id=form_id, owner_user_id=owner, name="contact", title="Contact us", version=1,
                     fields=FIELDS, created_at=created)
        )  # fmt: skip
        env = service_env("forms", free_port(), nats_dep, cassandra, keys,
                          {"SHEETS__DIRECTORY": str(home / "sheets"), "CQL__KEYSPACE": "chatmesh"})  # fmt: skip
        worker = await forms_worker(stack, env, home)
        note("startup_s", time.perf_counter() - began)
        publisher = AckedPublisher(nc)
        users = [str(uuid.uuid4()) for _ in range(1000)]
        pids = {"worker": worker.pid, "client": os.getpid(), **dependency_pids(home)}
        rounds = iter(range(1, 1_000_000))

        async def drain(limit_s: float) -> float:
            started = time.perf_counter()
            while await backlog(js) and time.perf_counter() - started < limit_s:
                await asyncio.sleep(0.1)
            return time.perf_counter() - started

        async def warm_round() -> None:
            await publish(publisher, form_id, 3000, users, 10_000_000 * next(rounds))
            await drain(120)

        warm_s, jit = await warm_until_jit_settles(pids["cassandra"], warm_round, limit_s=args.warmup_limit)
        note("warmup_s", warm_s)
        note("warmup_jit_cores", jit)

        spy = None
        if args.py_spy:  # collapsed stacks of the worker while it drains (py-spy is not a requirement)
            spy = await asyncio.create_subprocess_exec(
                args.py_spy, "record", "--pid", str(worker.pid), "--format", "raw", "--rate", "100",
                "--nonblocking", "--threads", "--output", str(Path(args.profile_out).resolve()),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        heard: list[float] = []

        async def on_processed(msg: object) -> None:
            s = fpb.Submission.FromString(msg.data)  # type: ignore[attr-defined]
            heard.append(time.time() - (s.created_at.seconds + s.created_at.nanos / 1e9))

        listener = await nc.subscribe("forms.processed.>", cb=on_processed)
        meter = CpuMeter(pids, loops=("worker",), children=("worker",))
        meter.start()
        jit_before = jit_compiler_cpu_s(pids["cassandra"])
        started = time.perf_counter()
        await publish(publisher, form_id, args.submissions, users, 0, args.rate)
        note("published_s", time.perf_counter() - started)
        left = await drain(600)
        wall = time.perf_counter() - started
        cpu = meter.stop()
        jit = (jit_compiler_cpu_s(pids["cassandra"]) - jit_before) / meter.seconds
        await asyncio.sleep(0.5)
        await listener.unsubscribe()
        if spy is not None:
            spy.send_signal(2)
            await spy.wait()
        note("drain_after_publish_s", left)
        note("backlog_left", await backlog(js))
        for name in ("worker", "worker_loop", "cassandra", "nats", "client", "other", "machine"):
            note(f"cpu_cores_{name}", cpu.get(name, 0.0))
        published = (await js.stream_info(FORMS_STREAM, subjects_filter="forms.submit.>")).state
        announced = (await js.stream_info(FORMS_STREAM, subjects_filter="forms.processed.>")).state
        note("submitted_total", len(published.subjects or {}))
        note("processed_announced_total", len(announced.subjects or {}))  # every one, exactly once

    print(f"processed_p50_ms={percentile(heard, 0.5) * 1000:.4g}", flush=True)
    print(f"processed_p99_ms={percentile(heard, 0.99) * 1000:.4g}", flush=True)
    print(f"processed_heard={len(heard)}", flush=True)
    print(f"drain_per_s={args.submissions / wall:.4g}", flush=True)
    cpu["cassandra_jit"] = jit
    for name in ("worker", "worker_children", "cassandra", "cassandra_jit", "nats"):
        print(f"{name}_cpu_ms_per_submission={cpu.get(name, 0.0) * wall / args.submissions * 1000:.4g}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submissions", type=int, default=15_000, help="submissions published and drained")
    parser.add_argument("--rate", type=float, default=500.0, help="submissions published a second (0: at once)")
    parser.add_argument("--warmup-limit", type=float, default=90.0, help="seconds of warm-up rounds at most")
    parser.add_argument("--py-spy", default="", help="path of py-spy: profile the worker while it drains")
    parser.add_argument("--profile-out", default="forms-worker.txt", help="where py-spy writes collapsed stacks")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory (logs, data) for a look after")
    asyncio.run(main(parser.parse_args()))
