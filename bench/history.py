"""make bench-history: history's write rate, and cursor-page latency over a 1,000,000-message conversation.

What runs: a fresh Cassandra (throughput tuning) and nats-server (JetStream: SendMessage
publishes each message's events and waits for the acks), and the history service as its own
process (``python -m services.history``, the environment mesh/supervisor.py gives it; its
per-user send limit raised out of the way). The benchmark calls it directly over gRPC (no
gateway: bench-gateway measures that hop), with access tokens signed by the key pair the service
trusts, as the session service would sign them.

(a) Writes: CONVERSATIONS direct conversations are created; SendMessage calls, SEND_IN_FLIGHT
    outstanding, spread round-robin over the conversations and their two members, warm up in
    rounds of SEND_WARMUP until Cassandra's JIT compilers have settled (C2 compiles for a minute
    or two after a start, about half a core of these two); then SEND_MESSAGES more are timed:
    ``sends_per_s``, the call latency, and the CPU each process spent per message.
(b) Load: one more conversation gets LOAD_MESSAGES messages written straight into CQL with the
    service's own schema (services.history.store.SCHEMA) and the rows ``insert_message`` writes:
    ``messages`` in BUCKET_SIZE sequence buckets and the two ``message_keys`` rows of each
    message; plus the ``conversations`` row with its last_seq hint, the ``direct_pairs`` row and
    both members' ``conversations_by_user`` rows, so the service sees the conversation as if its
    messages had been sent. The rows go as unlogged batches (one partition's message rows, or one
    batch's key rows), LOAD_CONCURRENCY at once, through the driver's execute_concurrent.
    Printed: ``loaded_messages``, the rows and the load rate.
(c) Pages: ListMessages through the service, page size 50, as one member, one call in flight:
    PAGE_WALKS walks from a random sequence across the whole conversation in a random direction,
    each walk one page by ``from_sequence`` and the next by the returned ``next_page_token``.
    Each service page is paired with the same page read bare: the SELECTs ``HistoryStore.page``
    runs (same text, prepared, same bucket walk, 51 rows) through the driver session class the
    service uses (services.runtime.cql.CqlSession), from this process; the two alternate which
    goes first so machine noise hits both alike. Warm-up walks (until the JIT settles) come
    first, not counted. Then as many pages from random cursors with PAGE_IN_FLIGHT outstanding
    give pages/s and the latency under load (``page_c<N>_*``). Last lines: ``page_p50_ms``,
    ``cql_page_p50_ms``, ``cql_page_p99_ms`` (the bare query), then ``page_p99_ms``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc

from bench.harness import (
    CpuMeter,
    Keys,
    cassandra_node,
    dependency_pids,
    make_keys,
    nats_server,
    scratch,
    service,
    service_env,
    warm_until_jit_settles,
)
from bench.stats import emit, percentile
from chatmesh.common.v1 import common_pb2
from chatmesh.history.v1 import history_pb2 as hpb
from chatmesh.history.v1 import history_pb2_grpc
from mesh.deps.base import free_port
from mesh.deps.cassandra import Cassandra
from services.history.ids import uuid7
from services.history.protos import message_pb
from services.history.store import _MESSAGE_COLUMNS, BUCKET_SIZE, MessageRecord, client_key, id_key
from services.runtime.cql import CqlSession, CqlSettings
from services.runtime.tokens import TokenSigner
from services.session.store import Account, AccountStore

KEYSPACE = "chatmesh"
PAGE_SIZE = 50
MESSAGES_PER_BATCH = 16  # ~3 KB of rows a batch: under Cassandra's 5 KiB batch warning

# The message and key statements insert_message runs, split for unlogged batches (keyspace-qualified: no USE).
INSERT_MESSAGE = (
    f"INSERT INTO {KEYSPACE}.messages (conversation_id, bucket, seq, message_id, author_user_id, author_kind, text, "
    "client_message_id, created_at, edited_at, deleted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, null, false)"
)
INSERT_KEY = f"INSERT INTO {KEYSPACE}.message_keys (conversation_id, key, seq) VALUES (?, ?, ?)"
# HistoryStore.page's SELECTs, verbatim (with the store's own column list).
PAGE_FORWARD = (
    f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? AND bucket = ? AND seq >= ? "
    "ORDER BY seq ASC LIMIT ?"
)
PAGE_BACKWARD = f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? AND bucket = ? AND seq <= ? LIMIT ?"


class Caller:
    """One user's view of the history service: a stub and the user's access token."""

    def __init__(self, stub: Any, keys: Keys, signer: TokenSigner, user_id: str) -> None:
        self.stub = stub
        self.user_id = user_id
        self.auth = (("authorization", f"Bearer {keys.token(signer, user_id).token}"),)


async def _bounded(calls: list[Any], limit: int) -> list[Any]:
    """Await the zero-argument coroutine functions in ``calls``, at most ``limit`` at once; results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Any) -> Any:
        async with gate:
            return await call()

    return list(await asyncio.gather(*(one(c) for c in calls)))


async def _accounts(cassandra: Cassandra, user_ids: list[str]) -> None:
    """Session accounts for the callers (their tokens are signed here, not by Login): peers must be accounts."""
    cql = await CqlSession.connect(
        CqlSettings(hosts=[cassandra.config.host], port=cassandra.config.native_port, keyspace=KEYSPACE)
    )
    try:
        store = AccountStore(cql)
        now = datetime.now(UTC)
        accounts = [Account(u, f"u{uuid.UUID(u).hex}", "-", u) for u in user_ids]
        await _bounded([functools.partial(store.create_account, a, now) for a in accounts], 32)
    finally:
        await cql.close()


# -- (a) writes -----------------------------------------------------------------------


async def write_phase(
    stub: Any,
    keys: Keys,
    conversations: int,
    messages: int,
    in_flight: int,
    warmup: int,
    meter: CpuMeter,
    cassandra_pid: int,
    cassandra: Cassandra,
) -> tuple[float, list[float], dict[str, float]]:
    """Create the conversations, warm up until Cassandra's JIT settled, then time ``messages`` SendMessage calls.

    Returns:
        Sends per second, their latencies (s), and the CPU ``meter`` read over the timed sends.
    """
    signer = keys.signer()
    users = [Caller(stub, keys, signer, str(uuid.uuid4())) for _ in range(2 * conversations)]
    await _accounts(cassandra, [u.user_id for u in users])

    async def create(pair: int) -> str:
        a, b = users[2 * pair], users[2 * pair + 1]
        reply = await stub.CreateConversation(
            hpb.CreateConversationRequest(kind=hpb.CONVERSATION_KIND_DIRECT, peer_user_id=b.user_id),
            metadata=a.auth,
            timeout=60,
        )
        return str(reply.conversation.conversation_id)

    ids = await _bounded([functools.partial(create, p) for p in range(conversations)], 16)
    run = uuid.uuid4().hex[:8]

    async def sends(count: int, prefix: str) -> tuple[float, list[float]]:
        latencies: list[float] = []
        next_index = 0

        async def worker() -> None:
            nonlocal next_index
            while next_index < count:
                i = next_index
                next_index += 1
                pair = i % conversations
                caller = users[2 * pair + (i // conversations) % 2]
                request = hpb.SendMessageRequest(
                    conversation_id=ids[pair], client_message_id=f"{prefix}{run}-{i}", text=f"bench message {i}"
                )
                started = time.perf_counter()
                await stub.SendMessage(request, metadata=caller.auth, timeout=30)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return count / (time.perf_counter() - started), latencies

    rounds = 0

    async def warm_round() -> None:
        nonlocal rounds
        rounds += 1
        await sends(warmup, f"w{rounds}-")

    warmup_s, jit = await warm_until_jit_settles(cassandra_pid, warm_round)
    emit("send_warmup_s", warmup_s)
    emit("send_warmup_jit_cores", jit)
    meter.start()
    rate, latencies = await sends(messages, "m")
    return rate, latencies, meter.stop()


# -- (b) load -------------------------------------------------------------------------


def _connect_driver(cassandra: Cassandra) -> tuple[Any, Any]:
    """A driver Cluster and Session on the keyspace (the services' settings: protocol 5, token-aware)."""
    from cassandra import ConsistencyLevel
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
        consistency_level=ConsistencyLevel.LOCAL_QUORUM,
        request_timeout=60,
    )
    cluster = Cluster(
        [cassandra.config.host],
        port=cassandra.config.native_port,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        protocol_version=5,
    )
    return cluster, cluster.connect()


def load_conversation(
    cassandra: Cassandra, conversation_id: str, members: tuple[str, str], count: int, concurrency: int
) -> int:
    """Write ``count`` messages and their conversation rows as the service would have; return the rows written.

    Blocking (the driver's execute_concurrent): call it in a thread.
    """
    from cassandra.concurrent import execute_concurrent
    from cassandra.query import BatchStatement, BatchType

    cluster, session = _connect_driver(cassandra)
    try:
        cid = uuid.UUID(conversation_id)
        message_stmt = session.prepare(INSERT_MESSAGE)
        key_stmt = session.prepare(INSERT_KEY)
        start = datetime.now(UTC) - timedelta(seconds=count)  # a message a second, ending now

        def record(seq: int) -> MessageRecord:
            at = start + timedelta(seconds=seq)
            return MessageRecord(
                conversation_id=conversation_id,
                seq=seq,
                message_id=uuid7(int(at.timestamp() * 1000)),
                author_user_id=members[seq % 2],
                author_kind=hpb.AUTHOR_KIND_USER,
                text=f"message {seq} of the long conversation, about as long as a chat line",
                client_message_id=f"load-{seq}",
                created_at=at,
                edited_at=None,
                deleted=False,
            )

        def batches() -> Iterator[tuple[Any, None]]:
            seq = 1
            while seq <= count:
                # One partition's worth at most: never cross a bucket in a message batch.
                end = min(count, seq + MESSAGES_PER_BATCH - 1, (seq // BUCKET_SIZE + 1) * BUCKET_SIZE - 1)
                messages = BatchStatement(batch_type=BatchType.UNLOGGED)
                keys = BatchStatement(batch_type=BatchType.UNLOGGED)
                for s in range(seq, end + 1):
                    m = record(s)
                    messages.add(
                        message_stmt,
                        (
                            cid,
                            s // BUCKET_SIZE,
                            s,
                            m.message_id,
                            m.author_user_id,
                            m.author_kind,
                            m.text,
                            m.client_message_id,
                            m.created_at,
                        ),
                    )
                    keys.add(key_stmt, (cid, client_key(m.author_user_id, m.client_message_id), s))
                    keys.add(key_stmt, (cid, id_key(m.message_id), s))
                yield messages, None
                yield keys, None
                seq = end + 1

        results = execute_concurrent(session, batches(), concurrency=concurrency, results_generator=True)
        for result in results:
            if not result.success:
                raise RuntimeError(f"load failed: {result.result_or_exc}")
        last = record(count)
        preview = message_pb(last).SerializeToString()
        members_uuid = [uuid.UUID(m) for m in members]
        session.execute(
            f"INSERT INTO {KEYSPACE}.conversations (conversation_id, kind, member_ids, model, created_at, last_seq) "
            "VALUES (%s, %s, %s, '', %s, %s)",
            (cid, hpb.CONVERSATION_KIND_DIRECT, members_uuid, start, count),
        )
        session.execute(
            f"INSERT INTO {KEYSPACE}.direct_pairs (pair_key, conversation_id) VALUES (%s, %s)",
            (":".join(sorted(members)), cid),
        )
        for member in members_uuid:
            # Both have read and received everything (each sent half of it).
            session.execute(
                f"INSERT INTO {KEYSPACE}.conversations_by_user (user_id, conversation_id, kind, member_ids, "
                "created_at, last_seq, last_message, last_activity, read_seq, delivered_seq) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    member,
                    cid,
                    hpb.CONVERSATION_KIND_DIRECT,
                    members_uuid,
                    start,
                    count,
                    preview,
                    last.created_at,
                    count,
                    count,
                ),
            )
        return 3 * count + 4
    finally:
        cluster.shutdown()


# -- (c) pages ------------------------------------------------------------------------


async def bare_page(cql: CqlSession, cid: uuid.UUID, start: int, forward: bool, last: int) -> int:
    """HistoryStore.page's SELECTs for one page of PAGE_SIZE + 1 rows (the +1 tells if there is more)."""
    limit = PAGE_SIZE + 1
    found = 0
    bucket = start // BUCKET_SIZE
    while found < limit and 0 <= bucket <= last // BUCKET_SIZE:
        query = PAGE_FORWARD if forward else PAGE_BACKWARD
        rows = await cql.execute(query, (cid, bucket, start, limit - found), prepare=True)
        found += len(rows)
        bucket += 1 if forward else -1
    return found


@dataclass
class PageTimes:
    """Latencies (s) of pages through the service and of the same pages read bare."""

    service: list[float] = field(default_factory=list)
    bare: list[float] = field(default_factory=list)


def _request(conversation_id: str, start: int, forward: bool, token: str) -> hpb.ListMessagesRequest:
    direction = common_pb2.DIRECTION_FORWARD if forward else common_pb2.DIRECTION_BACKWARD
    page = common_pb2.PageRequest(page_size=PAGE_SIZE, page_token=token)
    return hpb.ListMessagesRequest(conversation_id=conversation_id, page=page, direction=direction, from_sequence=start)


def _expected(start: int, forward: bool, last: int) -> int:
    return min(PAGE_SIZE, last - start + 1 if forward else start)


async def serial_walks(
    caller: Caller, cql: CqlSession, conversation_id: str, last: int, walks: int, rng: random.Random
) -> PageTimes:
    """``walks`` walks of two pages (by from_sequence, then by page token), each page also read bare."""
    times = PageTimes()
    cid = uuid.UUID(conversation_id)

    async def service_page(request: hpb.ListMessagesRequest) -> hpb.ListMessagesResponse:
        started = time.perf_counter()
        reply: hpb.ListMessagesResponse = await caller.stub.ListMessages(request, metadata=caller.auth, timeout=10)
        times.service.append(time.perf_counter() - started)
        return reply

    async def bare(start: int, forward: bool) -> None:
        started = time.perf_counter()
        await bare_page(cql, cid, start, forward, last)
        times.bare.append(time.perf_counter() - started)

    for walk in range(walks):
        start, forward = rng.randint(1, last), rng.random() < 0.5
        token = ""
        for _ in range(2):
            if walk % 2:  # alternate which goes first
                await bare(start, forward)
            reply = await service_page(_request(conversation_id, start, forward, token))
            if not walk % 2:
                await bare(start, forward)
            if len(reply.messages) != _expected(start, forward, last):
                raise AssertionError(f"page from {start} forward={forward}: {len(reply.messages)} messages")
            token = reply.page.next_page_token
            if not token:
                break
            start = reply.messages[-1].sequence + (1 if forward else -1)
    return times


async def loaded_pages(
    caller: Caller, conversation_id: str, last: int, pages: int, in_flight: int, rng: random.Random
) -> tuple[float, list[float]]:
    """``pages`` service pages from random cursors with ``in_flight`` outstanding; (pages/s, latencies)."""
    cursors = [(rng.randint(1, last), rng.random() < 0.5) for _ in range(pages)]
    latencies: list[float] = []

    async def worker() -> None:
        while cursors:
            start, forward = cursors.pop()
            started = time.perf_counter()
            await caller.stub.ListMessages(
                _request(conversation_id, start, forward, ""), metadata=caller.auth, timeout=10
            )
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return pages / (time.perf_counter() - started), latencies


async def main(args: argparse.Namespace) -> None:
    """Start everything, run the three phases, print the figures, stop everything."""
    began = time.perf_counter()
    rng = random.Random(args.seed)
    async with contextlib.AsyncExitStack() as stack:
        home = stack.enter_context(scratch("chatmesh-bench-history-", args.keep))
        keys = make_keys(home)
        nats_dep = await stack.enter_async_context(nats_server(home))
        cassandra = await stack.enter_async_context(cassandra_node(home))
        # History asks session whether a conversation's peer is an account (once per user: cached).
        session_port = free_port()
        session_env = service_env("session", session_port, nats_dep, cassandra, keys)
        session = await stack.enter_async_context(service("session", home, session_env, session_port, None))
        port = free_port()
        # The per-user send limit (20/s) would measure the limiter: out of the way.
        env = service_env(
            "history",
            port,
            nats_dep,
            cassandra,
            keys,
            {"SENDS_PER_SECOND": "10000", "SEND_BURST": "100000", "SESSION_TARGET": session.target},
        )
        history = await stack.enter_async_context(service("history", home, env, port, args.profile))
        channel = grpc.aio.insecure_channel(history.target)
        stack.push_async_callback(channel.close)
        stub = history_pb2_grpc.HistoryServiceStub(channel)
        emit("startup_s", time.perf_counter() - began)

        pids = {**dependency_pids(home), "history": history.proc.pid, "client": os.getpid()}
        meter = CpuMeter(pids, loops=("history",))
        sends_per_s, send_latencies, cpu = await write_phase(
            stub,
            keys,
            args.conversations,
            args.send_messages,
            args.send_in_flight,
            args.send_warmup,
            meter,
            pids["cassandra"],
            cassandra,
        )
        send_seconds = meter.seconds

        members = (str(uuid.uuid4()), str(uuid.uuid4()))
        conversation_id = str(uuid.uuid4())
        load_meter = CpuMeter(pids)
        load_meter.start()
        started = time.perf_counter()
        rows = await asyncio.to_thread(
            load_conversation, cassandra, conversation_id, members, args.load_messages, args.load_concurrency
        )
        load_s = time.perf_counter() - started
        load_cpu = load_meter.stop()

        cql = await CqlSession.connect(
            CqlSettings(hosts=[cassandra.config.host], port=cassandra.config.native_port, keyspace=KEYSPACE)
        )
        stack.push_async_callback(cql.close)
        caller = Caller(stub, keys, keys.signer(), members[0])
        last = args.load_messages
        warmup_s, jit = await warm_until_jit_settles(
            pids["cassandra"],
            lambda: serial_walks(caller, cql, conversation_id, last, max(1, args.page_walks // 10), rng),
            limit_s=90,
        )
        emit("page_warmup_s", warmup_s)
        emit("page_warmup_jit_cores", jit)
        times = await serial_walks(caller, cql, conversation_id, last, args.page_walks, rng)
        pages_per_s, loaded = await loaded_pages(
            caller, conversation_id, last, len(times.service), args.page_in_flight, rng
        )

    emit("sends", args.send_messages)
    emit("send_in_flight", args.send_in_flight)
    emit("send_p50_ms", percentile(send_latencies, 0.5) * 1000)
    emit("send_p99_ms", percentile(send_latencies, 0.99) * 1000)
    for name in ("cassandra", "history", "history_loop", "nats", "client", "other"):
        emit(f"send_cpu_cores_{name}", cpu.get(name, 0.0))
    for name in ("cassandra", "history", "nats", "ours"):
        emit(f"send_cpu_ms_per_msg_{name}", cpu[name] * send_seconds * 1000 / args.send_messages)
    emit("sends_per_s", sends_per_s)
    emit("loaded_messages", args.load_messages)
    emit("load_rows", rows)
    emit("load_s", load_s)
    emit("load_rows_per_s", rows / load_s)
    emit("load_messages_per_s", args.load_messages / load_s)
    for name in ("cassandra", "client", "other"):
        emit(f"load_cpu_cores_{name}", load_cpu[name])
    emit("pages", len(times.service))
    emit(f"page_c{args.page_in_flight}_per_s", pages_per_s)
    emit(f"page_c{args.page_in_flight}_p50_ms", percentile(loaded, 0.5) * 1000)
    emit(f"page_c{args.page_in_flight}_p99_ms", percentile(loaded, 0.99) * 1000)
    emit("total_s", time.perf_counter() - began)
    emit("page_p50_ms", percentile(times.service, 0.5) * 1000)
    emit("cql_page_p50_ms", percentile(times.bare, 0.5) * 1000)
    emit("cql_page_p99_ms", percentile(times.bare, 0.99) * 1000)
    emit("page_p99_ms", percentile(times.service, 0.99) * 1000)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=256, help="conversations of the write phase")
    parser.add_argument("--send-messages", type=int, default=4000, help="SendMessage calls timed")
    parser.add_argument("--send-warmup", type=int, default=1000, help="SendMessage calls a warm-up round makes")
    parser.add_argument("--send-in-flight", type=int, default=64, help="SendMessage calls outstanding")
    parser.add_argument("--load-messages", type=int, default=1_000_000, help="messages of the long conversation")
    parser.add_argument("--load-concurrency", type=int, default=64, help="batches in flight while loading")
    parser.add_argument("--page-walks", type=int, default=1500, help="walks of two pages, one call in flight")
    parser.add_argument("--page-in-flight", type=int, default=16, help="pages outstanding in the loaded run")
    parser.add_argument("--seed", type=int, default=1, help="random cursors' seed")
    parser.add_argument("--profile", type=Path, default=None, help="run history under cProfile, into DIR")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory (logs, data) for a look after")
    asyncio.run(main(parser.parse_args()))
