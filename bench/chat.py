"""make bench-chat: end-to-end chat latency and throughput through the gateway, against raw NATS.

What runs: a fresh nats-server (JetStream) and a fresh Cassandra (throughput tuning), the
session and history services as their own processes (``python -m services.session`` /
``services.history`` with the environment mesh/supervisor.py gives them: on 2 cores each needs
its own interpreter lock, as in production; in-process they would share the benchmark's), and
Envoy in front (the production rendering; its rate limiter given a bucket the benchmark cannot
drain). The benchmark client is one asyncio process talking only to the gateway (gRPC over h2c,
one channel per STREAMS_PER_CHANNEL devices so no HTTP/2 connection carries too many streams).

Set-up (not measured): PAIRS pairs of users register through the gateway (argon2 lowered to its
minimum: registration is not what is measured), each pair gets its direct conversation, and each
user's DEVICES_PER_USER devices open a session.Connect stream (PAIRS x 2 x DEVICES_PER_USER
streams, 1,000 by default, all open at once until the end of the measurement).

Warm-up (not counted): the traffic below, in rounds of WARMUP s, until Cassandra's JIT compilers
have settled (C2 compiles for a minute or two after a start, about half a core of these two:
measured during it, the workload would be charged for it), WARMUP_LIMIT s at most.

Measured: an open-loop sender calls history.SendMessage through the gateway at RATE messages/s
for DURATION s (at most MAX_IN_FLIGHT outstanding: a mesh that cannot keep up gets fewer
messages, and ``sent_per_s`` says how many it took), round-robin over the pairs and alternating
who speaks, so each user sends about RATE / (2 x PAIRS) messages a second. The send time of each
message is kept by client_message_id; its latency runs from just before its SendMessage call to
the arrival of its MessageCreated event on a device of the OTHER user (``p50_ms``, ``p99_ms``).
Every message must reach every device of both members exactly once: ``delivered_over_expected``
counts MessageCreated events (duplicates included) over sent messages x devices of both members;
``duplicates`` and ``missing`` say which way it is off. Rates are per second of the window from
the first send to the last ack (``sent_per_s``) or to the last arrival (``delivered_per_s``, in
device events: two per message with one device a user).

Baseline, same run, same NATS server: the same fanout with raw nats-py core publish/subscribe:
as many subscriptions as devices, on ``bench.user.<user_id>`` (the shape of ``chat.user.<id>``),
on one connection (as session holds one for all its devices), a publisher on another (as history
does) publishing each message's serialized Event to both members' subjects, at the same offered
rate, duration and warm-up. Last line: ``ratio_vs_raw_nats`` = our delivered events/s over raw.

Also printed: CPU use of each process during the measured window (sending and draining), in
cores (``cpu_cores_*``: 2.0 is the whole machine; ``_loop`` is a Python service's event-loop
thread alone; ``other`` is what other tenants of the machine used, i.e. noise) and in CPU
milliseconds per message sent (``cpu_ms_per_msg_*``, ``ours`` = every process of the run), so
the bottleneck shows. ``--profile DIR`` runs session and history under a profiler (bench.profiled:
cProfile, or yappi with CHATMESH_BENCH_PROFILER=yappi) and writes their stats there.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import functools
import itertools
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import nats

from bench.harness import (
    CpuMeter,
    ServiceProcess,
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
from bench.stats import emit, percentile
from chatmesh.events.v1 import events_pb2
from chatmesh.history.v1 import history_pb2 as hpb
from chatmesh.history.v1 import history_pb2_grpc
from chatmesh.session.v1 import session_pb2 as spb
from chatmesh.session.v1 import session_pb2_grpc
from mesh.deps.base import free_port

PASSWORD = "bench password 1"
SETUP_CONCURRENCY = 16
STREAMS_PER_CHANNEL = 100


@dataclass
class Device:
    """One logged-in device of a benchmark user."""

    index: int
    user_id: str
    auth: tuple[tuple[str, str], ...]
    session: Any  # session_pb2_grpc.SessionServiceStub on the device's channel
    history: Any  # history_pb2_grpc.HistoryServiceStub on the device's channel
    call: Any = None  # the open Connect call


@dataclass
class User:
    """A benchmark user, the access token Register gave its first device, and its devices."""

    user_id: str
    username: str
    first_token: str
    devices: list[Device] = field(default_factory=list)


@dataclass
class Tally:
    """What arrived where, and when, for one measured phase."""

    prefix: str
    sent_at: dict[str, float] = field(default_factory=dict)
    sent_ok: int = 0
    send_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    send_latencies: list[float] = field(default_factory=list)
    delivered: int = 0
    seen: set[tuple[int, str]] = field(default_factory=set)
    duplicates: int = 0
    latencies: list[float] = field(default_factory=list)
    first_send: float = 0.0
    last_ack: float = 0.0
    last_arrival: float = 0.0
    max_lag: float = 0.0

    def arrived(self, device_index: int, device_user: str, client_id: str, author: str) -> None:
        """Count one MessageCreated (or raw message) on a device; time it if the device is the other user's."""
        if not client_id.startswith(self.prefix):
            return  # warm-up traffic still in flight
        now = time.perf_counter()
        key = (device_index, client_id)
        if key in self.seen:
            self.duplicates += 1
        else:
            self.seen.add(key)
        self.delivered += 1
        self.last_arrival = now
        if author != device_user:
            sent = self.sent_at.get(client_id)
            if sent is not None:
                self.latencies.append(now - sent)


class Bench:
    """The client side: users, devices and their streams, the sender, the raw-NATS baseline."""

    def __init__(self, channels: list[grpc.aio.Channel], pairs: int, devices_per_user: int) -> None:
        self.channels = channels
        self.pairs = pairs
        self.devices_per_user = devices_per_user
        self.users: list[User] = []
        self.conversations: list[str] = []
        self.devices: list[Device] = []
        self.tally = Tally("-")
        self._readers: list[asyncio.Task[None]] = []

    def _device(self, user_id: str, token: str) -> Device:
        index = len(self.devices)
        channel = self.channels[index % len(self.channels)]
        device = Device(
            index,
            user_id,
            (("authorization", f"Bearer {token}"),),
            session_pb2_grpc.SessionServiceStub(channel),
            history_pb2_grpc.HistoryServiceStub(channel),
        )
        self.devices.append(device)
        return device

    async def set_up(self) -> None:
        """Register the users, log in their extra devices, create one conversation per pair."""
        anonymous = session_pb2_grpc.SessionServiceStub(self.channels[0])
        run = f"{uuid.uuid4().hex[:6]}"

        async def register(index: int) -> User:
            username = f"b{run}u{index}"
            reply = await anonymous.Register(
                spb.RegisterRequest(username=username, password=PASSWORD, device_name="d0"), timeout=60
            )
            return User(reply.user_id, username, reply.tokens.access_token)

        self.users = await _bounded([functools.partial(register, i) for i in range(2 * self.pairs)])
        for user in self.users:  # devices in a fixed order: device i sits on channel i % channels
            user.devices.append(self._device(user.user_id, user.first_token))
            for d in range(1, self.devices_per_user):
                login = await anonymous.Login(
                    spb.LoginRequest(username=user.username, password=PASSWORD, device_name=f"d{d}"), timeout=60
                )
                user.devices.append(self._device(user.user_id, login.tokens.access_token))

        async def create(pair: int) -> str:
            a, b = self.users[2 * pair], self.users[2 * pair + 1]
            reply = await a.devices[0].history.CreateConversation(
                hpb.CreateConversationRequest(kind=hpb.CONVERSATION_KIND_DIRECT, peer_user_id=b.user_id),
                metadata=a.devices[0].auth,
                timeout=60,
            )
            return str(reply.conversation.conversation_id)

        self.conversations = await _bounded([functools.partial(create, p) for p in range(self.pairs)])

    async def connect_all(self) -> float:
        """Open every device's Connect stream; return once each has said it is live (seconds taken)."""
        started = time.perf_counter()
        live = [asyncio.get_running_loop().create_future() for _ in self.devices]

        async def read(device: Device, ready: asyncio.Future[None]) -> None:
            call = device.session.Connect(spb.ConnectRequest(), metadata=device.auth)
            device.call = call
            user_id, index = device.user_id, device.index
            async for response in call:
                event = response.event
                if event.HasField("message_created"):
                    message = event.message_created.message
                    self.tally.arrived(index, user_id, message.client_message_id, message.author_user_id)
                elif not ready.done():
                    ready.set_result(None)  # the first event (a keep-alive) says the stream is live

        for start in range(0, len(self.devices), 50):  # 50 at a time: no thundering herd of consumers
            batch = range(start, min(start + 50, len(self.devices)))
            for i in batch:
                self._readers.append(asyncio.create_task(read(self.devices[i], live[i])))
            await asyncio.wait_for(asyncio.gather(*(live[i] for i in batch)), 60)
        return time.perf_counter() - started

    async def disconnect_all(self) -> None:
        """Cancel every Connect stream."""
        for device in self.devices:
            if device.call is not None:
                device.call.cancel()
        for reader in self._readers:
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await reader
        self._readers.clear()

    def sender(self, i: int) -> tuple[Device, str]:
        """Who sends message ``i``, and into which conversation: pairs round-robin, speakers alternating."""
        pair = i % self.pairs
        speaker = (i // self.pairs) % 2
        user = self.users[2 * pair + speaker]
        device = user.devices[(i // (2 * self.pairs)) % self.devices_per_user]
        return device, self.conversations[pair]

    def send_one(self, tally: Tally) -> Callable[[int], Awaitable[None]]:
        """The mesh's send: SendMessage through the gateway."""

        async def send(i: int) -> None:
            device, conversation = self.sender(i)
            client_id = f"{tally.prefix}{i}"
            request = hpb.SendMessageRequest(
                conversation_id=conversation, client_message_id=client_id, text=f"bench message {i}"
            )
            started = time.perf_counter()
            tally.sent_at[client_id] = started
            try:
                await device.history.SendMessage(request, metadata=device.auth, timeout=30)
            except grpc.aio.AioRpcError as exc:
                tally.send_errors[exc.code().name] += 1
                return
            now = time.perf_counter()
            tally.sent_ok += 1
            tally.last_ack = now
            tally.send_latencies.append(now - started)

        return send


async def _bounded(calls: list[Callable[[], Awaitable[Any]]], limit: int = SETUP_CONCURRENCY) -> list[Any]:
    """Run ``calls`` with at most ``limit`` at once; results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await call()

    return list(await asyncio.gather(*(one(c) for c in calls)))


async def offer(
    tally: Tally, send: Callable[[int], Awaitable[None]], rate: float, duration_s: float, max_in_flight: int
) -> None:
    """Call ``send(i)`` for i = 0, 1... at ``rate`` a second (open loop) for ``duration_s``, ``max_in_flight`` at most.

    A send due while ``max_in_flight`` are outstanding waits; how late the sender fell behind its
    schedule is kept in ``tally.max_lag``. Nothing is started after ``duration_s``: a mesh that
    cannot keep up gets fewer messages, and ``sent_per_s`` says how many it took.
    """
    total = int(rate * duration_s)
    gate = asyncio.Semaphore(max_in_flight)
    pending: set[asyncio.Task[None]] = set()

    async def one(i: int) -> None:
        try:
            await send(i)
        finally:
            gate.release()

    loop = asyncio.get_running_loop()
    start = loop.time()
    tally.first_send = time.perf_counter()
    end = start + duration_s
    i = 0
    while i < total and loop.time() < end:
        due = min(total, int((loop.time() - start) * rate) + 1)
        while i < due and loop.time() < end:
            await gate.acquire()
            tally.max_lag = max(tally.max_lag, loop.time() - (start + i / rate))
            task = asyncio.create_task(one(i))
            pending.add(task)
            task.add_done_callback(pending.discard)
            i += 1
        await asyncio.sleep(0.002)
    if pending:
        await asyncio.gather(*pending)


async def drain(tally: Tally, expected: Callable[[], int], quiet_s: float = 10.0, limit_s: float = 120.0) -> None:
    """Wait until every expected event arrived, or none arrived for ``quiet_s``, or ``limit_s`` passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    last_count, last_change = tally.delivered, loop.time()
    while tally.delivered < expected() and loop.time() < deadline:
        await asyncio.sleep(0.05)
        if tally.delivered != last_count:
            last_count, last_change = tally.delivered, loop.time()
        elif loop.time() - last_change > quiet_s:
            return
    await asyncio.sleep(0.5)  # late duplicates would show here


def raw_event(i: int, conversation_id: str, author: str, prefix: str) -> bytes:
    """An Event shaped like history's MessageCreated for message ``i`` (the raw baseline's payload)."""
    event = events_pb2.Event(
        message_created=events_pb2.MessageCreated(
            message=hpb.Message(
                message_id=str(uuid.uuid4()),
                conversation_id=conversation_id,
                sequence=i + 1,
                author_user_id=author,
                author_kind=hpb.AUTHOR_KIND_USER,
                text=f"bench message {i}",
                client_message_id=f"{prefix}{i}",
                delivery_state=hpb.DELIVERY_STATE_SENT,
            )
        )
    )
    event.occurred_at.GetCurrentTime()
    event.message_created.message.created_at.GetCurrentTime()
    return event.SerializeToString()


async def raw_nats_phase(
    bench: Bench, url: str, rate: float, duration_s: float, warmup_s: float, max_in_flight: int
) -> Tally:
    """The same fanout with core NATS publish/subscribe; returns the measured phase's tally."""
    subscriber = await nats.connect(url, name="bench-raw-subscriber", pending_size=64 * 1024 * 1024)
    publisher = await nats.connect(url, name="bench-raw-publisher", pending_size=64 * 1024 * 1024)
    tally = Tally("-")
    try:
        for device in bench.devices:

            def handler(device_index: int, user_id: str) -> Callable[[Any], Awaitable[None]]:
                async def on_msg(msg: Any) -> None:
                    message = events_pb2.Event.FromString(msg.data).message_created.message
                    tally.arrived(device_index, user_id, message.client_message_id, message.author_user_id)

                return on_msg

            await subscriber.subscribe(f"bench.user.{device.user_id}", cb=handler(device.index, device.user_id))
        await subscriber.flush()

        def publish_one(phase: Tally) -> Callable[[int], Awaitable[None]]:
            async def publish(i: int) -> None:
                device, conversation = bench.sender(i)
                pair = bench.users[2 * (i % bench.pairs)], bench.users[2 * (i % bench.pairs) + 1]
                payload = raw_event(i, conversation, device.user_id, phase.prefix)
                started = time.perf_counter()
                phase.sent_at[f"{phase.prefix}{i}"] = started
                for member in pair:
                    await publisher.publish(f"bench.user.{member.user_id}", payload)
                phase.sent_ok += 1
                phase.last_ack = time.perf_counter()

            return publish

        per_message = 2 * bench.devices_per_user
        warm = tally = Tally("w")
        await offer(warm, publish_one(warm), rate, warmup_s, max_in_flight)
        await publisher.flush()
        await drain(warm, lambda: warm.sent_ok * per_message, quiet_s=2.0, limit_s=10.0)
        tally = Tally("m")
        await offer(tally, publish_one(tally), rate, duration_s, max_in_flight)
        await publisher.flush()
        await drain(tally, lambda: tally.sent_ok * per_message)
        return tally
    finally:
        await subscriber.close()
        await publisher.close()


def report(tally: Tally, per_message: int) -> dict[str, float]:
    """Figures of one phase: rates, latency percentiles, delivered over expected."""
    expected = tally.sent_ok * per_message
    send_window = max(1e-9, tally.last_ack - tally.first_send)
    deliver_window = max(1e-9, tally.last_arrival - tally.first_send)
    latencies = tally.latencies or [float("nan")]
    return {
        "sent": tally.sent_ok,
        "send_errors": sum(tally.send_errors.values()),
        "sent_per_s": tally.sent_ok / send_window,
        "delivered": tally.delivered,
        "expected": expected,
        "duplicates": tally.duplicates,
        "missing": expected - len(tally.seen),
        "delivered_per_s": tally.delivered / deliver_window,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000,
        "delivered_over_expected": tally.delivered / expected if expected else 0.0,
        "sender_lag_max_ms": tally.max_lag * 1000,
    }


async def main(args: argparse.Namespace) -> None:
    """Start everything, run the phases, print the figures, stop everything."""
    began = time.perf_counter()
    profile_dir: Path | None = args.profile
    async with contextlib.AsyncExitStack() as stack:
        home = stack.enter_context(scratch("chatmesh-bench-chat-", args.keep))
        keys = make_keys(home)
        nats_dep = await stack.enter_async_context(nats_server(home))
        cassandra = await stack.enter_async_context(cassandra_node(home))
        started: dict[str, ServiceProcess] = {}
        settings = {
            # Registration is set-up, not what is measured: argon2 at its lowest allowed cost.
            "session": {"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "8192"},
            "history": {},
        }
        for name, extra in settings.items():
            port = free_port()
            if name == "history":  # CreateConversation asks session whether the peer is an account
                extra = {**extra, "SESSION_TARGET": started["session"].target}
            env = service_env(name, port, nats_dep, cassandra, keys, extra)
            started[name] = await stack.enter_async_context(service(name, home, env, port, profile_dir))
        gw = await stack.enter_async_context(gateway(home, started.values()))
        emit("startup_s", time.perf_counter() - began)

        devices = args.pairs * 2 * args.devices_per_user
        count = max(2, -(-devices // STREAMS_PER_CHANNEL))
        channels = [
            grpc.aio.insecure_channel(f"127.0.0.1:{gw.port}", options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(count)
        ]
        for channel in channels:
            stack.push_async_callback(channel.close)
        bench = Bench(channels, args.pairs, args.devices_per_user)
        t0 = time.perf_counter()
        await bench.set_up()
        emit("setup_s", time.perf_counter() - t0)
        emit("connect_s", await bench.connect_all())

        per_message = 2 * args.devices_per_user
        pids = {"cassandra": 0, "nats": 0, "envoy": 0}
        for name, svc in started.items():
            pids[name] = svc.proc.pid
        pids.update(dependency_pids(home))
        pids["client"] = os.getpid()

        warm = bench.tally = Tally("w")
        warm_send = bench.send_one(warm)
        per_round = int(args.rate * args.warmup)
        rounds = itertools.count()

        def warm_round() -> Awaitable[None]:
            # New client message ids every round: a repeated id is an idempotent retry, a cheaper path.
            offset = next(rounds) * per_round
            return offer(warm, lambda i: warm_send(offset + i), args.rate, args.warmup, args.max_in_flight)

        warmup_s, jit = await warm_until_jit_settles(pids["cassandra"], warm_round, limit_s=args.warmup_limit)
        await drain(warm, lambda: warm.sent_ok * per_message, quiet_s=5.0, limit_s=60.0)
        emit("warmup_s", warmup_s)
        emit("warmup_jit_cores", jit)
        meter = CpuMeter(pids, loops=("history", "session", "client"))
        tally = Tally("m")
        bench.tally = tally
        meter.start()
        await offer(tally, bench.send_one(tally), args.rate, args.duration, args.max_in_flight)
        await drain(tally, lambda: tally.sent_ok * per_message)
        cpu = meter.stop()
        await bench.disconnect_all()

        ours = report(tally, per_message)
        raw_tally = await raw_nats_phase(bench, nats_dep.url, args.rate, args.duration, args.warmup, args.max_in_flight)
        raw = report(raw_tally, per_message)

    emit("devices", devices)
    emit("offered_msgs_per_s", float(args.rate))
    emit("duration_s", float(args.duration))
    emit("sent", ours["sent"])
    emit("send_errors", ours["send_errors"])
    if tally.send_errors:
        emit("send_error_codes", ",".join(f"{k}:{v}" for k, v in sorted(tally.send_errors.items())))
    emit("sent_per_s", ours["sent_per_s"])
    emit("send_rpc_p50_ms", percentile(tally.send_latencies or [float("nan")], 0.5) * 1000)
    emit("send_rpc_p99_ms", percentile(tally.send_latencies or [float("nan")], 0.99) * 1000)
    emit("sender_lag_max_ms", ours["sender_lag_max_ms"])
    emit("delivered", ours["delivered"])
    emit("expected", ours["expected"])
    emit("duplicates", ours["duplicates"])
    emit("missing", ours["missing"])
    emit("delivered_per_s", ours["delivered_per_s"])
    emit("p50_ms", ours["p50_ms"])
    emit("p99_ms", ours["p99_ms"])
    emit("max_ms", ours["max_ms"])
    emit("delivered_over_expected", ours["delivered_over_expected"])
    names = ("cassandra", "history", "history_loop", "session", "session_loop", "envoy", "nats", "client")
    for name in (*names, "other", "machine"):
        emit(f"cpu_cores_{name}", cpu.get(name, 0.0))
    # CPU each message cost each process (ms): comparable across runs whatever the noise.
    for name in (*names, "ours"):
        emit(f"cpu_ms_per_msg_{name}", cpu.get(name, 0.0) * meter.seconds * 1000 / max(1, tally.sent_ok))
    emit("raw_sent_per_s", raw["sent_per_s"])
    emit("raw_delivered_over_expected", raw["delivered_over_expected"])
    emit("raw_delivered_per_s", raw["delivered_per_s"])
    emit("raw_p50_ms", raw["p50_ms"])
    emit("raw_p99_ms", raw["p99_ms"])
    emit("total_s", time.perf_counter() - began)
    emit("ratio_vs_raw_nats", ours["delivered_per_s"] / raw["delivered_per_s"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=500, help="pairs of users, each with a direct conversation")
    parser.add_argument("--devices-per-user", type=int, default=1, help="Connect streams per user")
    parser.add_argument("--rate", type=float, default=1000.0, help="offered SendMessage calls per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of measured sending")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds a warm-up round sends, not counted")
    parser.add_argument("--warmup-limit", type=float, default=150.0, help="seconds of warm-up rounds at most")
    parser.add_argument("--max-in-flight", type=int, default=500, help="SendMessage calls outstanding at most")
    parser.add_argument("--profile", type=Path, default=None, help="run session and history under cProfile, into DIR")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory (logs, data) for a look after")
    asyncio.run(main(parser.parse_args()))
