"""make bench-inference: what the inference service costs over llama.cpp itself, on the bundled SmolLM2-135M.

Everything in one run, on loopback and free ports, under one temporary directory. The
service is the real one (services.inference.server.build), in this process, with its
default settings (n_ctx, n_batch, threads, slots, queue) but for ports and keys; the
benchmark calls it over gRPC with access tokens signed by the key pair it trusts.

(a) Streaming overhead. A fixed raw prompt that greedy decoding keeps continuing (counting),
    with the same sampling on both paths: llama-cpp-python called in this process
    (``Llama.generate`` on a thread of its own, as a slot has; each token detokenized; a Llama
    built with the service's n_ctx/n_batch/threads), and the service's
    Generate stream (tokens timed as the client receives them). Both are decode rates from
    the first token to the last, so prompt processing is out of it. The two alternate for
    12 rounds (--rounds) of 64 tokens (--tokens), each going first in every other round, so
    machine noise hits both alike: ``inprocess_tokens_per_s``, ``stream_tokens_per_s``
    (medians; and the service's own measure of the same streams,
    ``stream_server_tokens_per_s``). The service runs in a process of its own here, as
    clients meet it (a client reading the stream in the service's own process would share
    its interpreter lock). ``ratio_stream_vs_inprocess`` is the median of the
    rounds' ratios: on this shared machine the rate swings by 2x within a minute, and a
    round's two runs are seconds apart.
(b) Cancel. Two users' long Generate streams hold both default slots; a third user's request
    queues (``queue_position`` 1). Cancel (the RPC, as the user's other tab would) one running
    stream mid-way. ``cancel_to_free_ms``: from sending Cancel until the slot is handed to the
    waiting request (the service's own ``chatmesh_inference_queue_depth`` gauge drops to 0,
    read in this process); ``cancel_to_first_token_ms``: until that request's first token
    reaches the client (it sends the same prompt, which the freed slot's context already holds,
    so that is one decode step more). ``time_per_token_ms``: the median gap between the
    cancelled stream's tokens before the cancel (both slots busy, as when it lands). Goal:
    ``cancel_to_free_over_token_time`` <= 2 (a worker checks its flag after every token: at most
    the token in progress, then the hand-over). Medians of 5 rounds.
(c) Concurrency. Total completion tokens per second, prompt processing and queueing
    included, of 4 users' Generate streams at once over 1 alone (distinct prompts, the
    default slots: 4 streams on 2 slots queue two behind two). ``concurrency4_over_1``.
(d) KV reuse across turns. Cassandra and nats-server start fresh (Cassandra with the
    ``startup`` JVM tuning: the history load is light, and the throughput tuning's C2
    compiler would spend half a core of this machine beside the model for the first
    minutes), the history service as its own process (bench.harness). 6 assistant
    conversations (--conversations) of 20 turns (--turns) each, one turn at a time
    round-robin (so a conversation's next turn usually finds its slot holding another
    conversation and restores its saved KV state, the multi-user case): SendMessage, then Reply (greedy,
    at most 24 tokens). Time to first token as the client sees it, history reads and
    template rendering included. ``ttft_turn1_ms``, ``ttft_turn20_ms`` (medians; turn 1 is
    timed in the conversations' first turns and again in a fresh conversation right after
    each turn 20), ``ttft_turn20_over_turn1``: the median over the conversations of turn 20
    over the fresh turn 1 timed right after it (paired, since the load drifts in the minute
    between the two ends; goal <= 1.5: turn 20 evaluates only the new message, not the
    ~1,000-token history). With turn 20's prompt and cached token counts, and
    ``reply_before_slot_*_ms`` (Reply's ``queue_wait_ms``: from its arrival to a slot, so
    history reads, tokenizing and the template are in it) to show where a slow turn 20
    spends its time. The fresh turn 1 asks its own conversation's first question, a few tokens
    shorter than turn 20's ("question 1", "number 6" against "question 20", "number 133");
    ``ttft_turn20_over_turn1_same_text`` pairs each turn 20 with a fresh conversation asking
    exactly the same message right after it, so that the two differ only in the history.
(e) KV reuse across grounded turns. An ingest service (embedded store, in this process) holds
    one collection of 40 passages (sections of Python's language reference, ``pydoc_data``);
    3 conversations (--grounded-conversations) of 10 grounded turns (--grounded-turns), one
    turn at a time round-robin as in (d), each Reply naming the collection: it searches it as
    the user and puts the best passages (``grounded_passages`` per turn, threshold off so
    every turn carries them) into the latest user turn, after the history. Each turn 10 is
    paired with turn 1 of a fresh grounded conversation right after it:
    ``ttft_grounded_turn10_over_turn1`` (goal <= 1.5: turn 10 evaluates its passages and
    question and the previous exchange, not the history before them) and
    ``cached_prefix_tokens_grounded`` (turn 10's prompt tokens taken from the saved KV state;
    with ``prompt_tokens_grounded_turn10`` beside it).

Noise: ``load_avg_1m_start`` and ``load_avg_1m_end``, and ``other_cores`` (CPU the rest of
the machine used, in cores, during (a)) say what the run shared the machine with.

Last line, the headline: ``ratio_stream_vs_inprocess`` (goal >= 0.95). It is what the service
adds to every token every user sees (thread hand-over, gRPC streaming, text bookkeeping), and
it is the most stable of the figures: the two paths are measured alternately on the same
prompt, so the machine's load mostly cancels out. The TTFT and concurrency ratios depend as
much on llama.cpp and the machine's cores as on the service.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.struct_pb2 import Struct
from llama_cpp import Llama

from bench.harness import CpuMeter, Keys, make_keys, nats_server, scratch, service, service_env
from bench.stats import emit, median
from chatmesh.history.v1 import history_pb2 as hpb
from chatmesh.history.v1 import history_pb2_grpc
from chatmesh.inference.v1 import inference_pb2 as pb
from chatmesh.inference.v1 import inference_pb2_grpc
from chatmesh.ingest.v1 import ingest_pb2 as ipb
from chatmesh.ingest.v1 import ingest_pb2_grpc
from mesh.deps.base import free_port
from mesh.deps.cassandra import TUNING_ENV, Cassandra, CassandraConfig
from mesh.deps.process import running
from services.inference.grounding import query_of
from services.inference.models import context_options, open_llama
from services.inference.server import build
from services.inference.settings import InferenceSettings
from services.ingest.server import assemble as assemble_ingest
from services.ingest.settings import IngestSettings
from services.runtime.bus import NatsSettings
from services.runtime.tokens import generate_key_pair

#: Greedy decoding keeps counting: no early end-of-generation on either path.
PROMPT = "Count from 1 to 1000, separated by commas: 1, 2, 3, 4, 5,"
CANCEL_AFTER_TOKENS = 16
CANCEL_MAX_TOKENS = 1000
CONCURRENCY_TOKENS = 96
REPLY_TOKENS = 24
CALL_TIMEOUT_S = 120.0

Auth = tuple[tuple[str, str], ...]
InferenceStub = inference_pb2_grpc.InferenceServiceStub


def sampling(max_tokens: int) -> pb.SamplingParams:
    """Greedy with every parameter set (the in-process path uses the same); no repeat penalty: counting repeats."""
    return pb.SamplingParams(
        max_tokens=max_tokens, temperature=0, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.0, seed=1
    )


def decode_rate(times: list[float]) -> float:
    """Tokens per second from the first token to the last."""
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0


def counting_prompt(start: int) -> str:
    """A counting prompt of its own (distinct users, distinct prompts)."""
    return f"Count from {start} to {start + 999}, separated by commas: " + ", ".join(str(start + i) for i in range(5))


class Users:
    """Made-up users with access tokens (the session service's role)."""

    def __init__(self, keys: Keys) -> None:
        self._keys = keys
        self._signer = keys.signer()

    def new(self) -> Auth:
        """Call metadata of a new user on a new device."""
        token = self._keys.token(self._signer, str(uuid.uuid4())).token
        return (("authorization", f"Bearer {token}"),)


@dataclass
class StreamLog:
    """One Generate or Reply stream as the client saw it: each token timed on arrival."""

    started: pb.Started | None = None
    token_times: list[float] = field(default_factory=list)
    finished: pb.Finished | None = None


async def follow(responses: Any, log: StreamLog | None = None) -> StreamLog:
    """Read a Generate or Reply stream to its end into ``log`` (read while it fills)."""
    log = log if log is not None else StreamLog()
    async for chunk in responses:
        kind = chunk.WhichOneof("chunk")
        if kind == "token":
            log.token_times.append(time.perf_counter())
        elif kind == "started":
            log.started = chunk.started
        elif kind == "finished":
            log.finished = chunk.finished
    return log


def generate(stub: InferenceStub, auth: Auth, prompt: str, max_tokens: int, request_id: str = "") -> Any:
    """A Generate call on a raw prompt (the stream, not yet read)."""
    request = pb.GenerateRequest(prompt=prompt, sampling=sampling(max_tokens), request_id=request_id)
    return stub.Generate(request, metadata=auth, timeout=CALL_TIMEOUT_S)


async def until(condition: Callable[[], bool], timeout_s: float = CALL_TIMEOUT_S) -> None:
    """Poll ``condition`` every millisecond (tokens are timed on arrival, not here; a gauge read here is ~1 ms late)."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.001)


# -- (a) streaming overhead ----------------------------------------------------------------


def inprocess_decode(llama: Llama, tokens: list[int], max_tokens: int) -> list[float]:
    """Generate ``max_tokens`` tokens with :func:`sampling` (blocking); when each token's text was ready."""
    params = sampling(max_tokens)
    times: list[float] = []
    previous: list[int] = []
    for token in llama.generate(
        tokens,
        top_k=params.top_k,
        top_p=params.top_p,
        min_p=params.min_p,
        temp=params.temperature,
        repeat_penalty=params.repeat_penalty,
        reset=True,
    ):
        llama.detokenize([token], prev_tokens=previous)
        previous.append(token)
        times.append(time.perf_counter())
        if len(times) >= max_tokens:
            break
    return times


async def streaming_overhead(
    stub: InferenceStub, settings: InferenceSettings, auth: Auth, rounds: int, tokens: int, service_pid: int
) -> float:
    """(a): llama-cpp-python in this process and the service's stream (its process: ``service_pid``), alternately.

    Returns:
        The median over the rounds of the stream's rate over the in-process rate in the same round.
    """
    # Built and run on one thread of its own, as a service slot's context is (a Llama built on
    # another thread than the one decoding ran up to ~10% slower in a probe here: no handicap for the baseline).
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-llama")
    loop = asyncio.get_running_loop()

    def load() -> Llama:
        return open_llama(settings.models[settings.default_model], **context_options(settings))

    llama = await loop.run_in_executor(executor, load)
    local: list[float] = []
    streamed: list[float] = []
    server: list[float] = []
    try:
        prompt = llama.tokenize(PROMPT.encode(), add_bos=True, special=True)
        # Warm-up, not counted: weights paged in, the service's slot context built, the channel up.
        await loop.run_in_executor(executor, inprocess_decode, llama, prompt, 16)
        await follow(generate(stub, auth, PROMPT, 16))
        meter = CpuMeter({"bench": os.getpid(), "inference": service_pid})
        meter.start()

        async def inprocess() -> None:
            local.append(decode_rate(await loop.run_in_executor(executor, inprocess_decode, llama, prompt, tokens)))

        async def stream() -> None:
            log = await follow(generate(stub, auth, PROMPT, tokens))
            assert len(log.token_times) == tokens and log.finished is not None, "the stream ended early"
            streamed.append(decode_rate(log.token_times))
            server.append(log.finished.usage.tokens_per_second)

        for index in range(rounds):  # ABBA: neither path always goes first
            for path in (inprocess, stream) if index % 2 == 0 else (stream, inprocess):
                await path()
        cores = meter.stop()
    finally:
        await loop.run_in_executor(executor, llama.close)
        executor.shutdown()
    emit("decode_tokens", tokens)
    emit("other_cores", cores["other"])
    emit("inprocess_tokens_per_s", median(local))
    emit("stream_server_tokens_per_s", median(server))
    emit("stream_tokens_per_s", median(streamed))
    return median([s / i for s, i in zip(streamed, local, strict=True)])


# -- (b) cancel ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CancelTimes:
    """One cancel: seconds from sending Cancel to the slot's hand-over and to the queued request's first token."""

    to_free: float
    to_first_token: float
    per_token: float
    """Median seconds between the cancelled stream's tokens before the cancel."""


async def cancel_round(stub: InferenceStub, users: Users, queued: Callable[[], float], index: int) -> CancelTimes:
    """(b), once; ``queued()`` is the service's queue-depth gauge (requests waiting for a slot)."""
    calls = {name: (f"{name}-{index}", users.new()) for name in "abc"}
    logs = {name: StreamLog() for name in "abc"}
    tasks: list[asyncio.Task[StreamLog]] = []

    def start(name: str, max_tokens: int) -> None:
        request_id, auth = calls[name]
        tasks.append(asyncio.create_task(follow(generate(stub, auth, PROMPT, max_tokens, request_id), logs[name])))

    a, c = logs["a"], logs["c"]
    try:
        start("a", CANCEL_MAX_TOKENS)
        start("b", CANCEL_MAX_TOKENS)
        await until(lambda: len(a.token_times) >= 2 and len(logs["b"].token_times) >= 2)  # both slots generating
        start("c", 4)
        await until(lambda: c.started is not None and len(a.token_times) >= CANCEL_AFTER_TOKENS)
        assert c.started is not None and c.started.queue_position == 1, f"not queued: {c.started}"
        assert queued() == 1, f"queue depth {queued()}"
        gaps = [t1 - t0 for t0, t1 in zip(a.token_times[1:], a.token_times[2:], strict=False)]
        request_id, auth = calls["a"]
        sent = time.perf_counter()
        answer = await stub.Cancel(pb.CancelRequest(request_id=request_id), metadata=auth, timeout=10)
        assert answer.was_running
        # The slot goes from the cancelled worker straight to the waiter: the queue empties then.
        await until(lambda: queued() == 0)
        freed = time.perf_counter() - sent
        await until(lambda: bool(c.token_times))
        await asyncio.wait_for(tasks[0], CALL_TIMEOUT_S)
        assert a.finished is not None and a.finished.reason == pb.FINISH_REASON_CANCELLED, a.finished
        return CancelTimes(freed, c.token_times[0] - sent, statistics.median(gaps))
    finally:
        for request_id, auth in calls.values():
            await stub.Cancel(pb.CancelRequest(request_id=request_id), metadata=auth, timeout=10)
        for task in tasks:
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
                await asyncio.wait_for(task, CALL_TIMEOUT_S)


async def cancel_latency(stub: InferenceStub, users: Users, queued: Callable[[], float], rounds: int) -> None:
    """(b): medians of ``rounds`` cancels."""
    times = [await cancel_round(stub, users, queued, index) for index in range(rounds)]
    per_token = median([t.per_token for t in times])
    freed = median([t.to_free for t in times])
    first = median([t.to_first_token for t in times])
    emit("time_per_token_ms", per_token * 1000)
    emit("cancel_to_first_token_ms", first * 1000)
    emit("cancel_to_first_token_over_token_time", first / per_token)
    emit("cancel_to_free_ms", freed * 1000)
    emit("cancel_to_free_over_token_time", freed / per_token)


# -- (c) concurrency -------------------------------------------------------------------------


async def streams_at_once(stub: InferenceStub, users: Users, prompts: list[str]) -> float:
    """Completion tokens per second of one Generate stream per prompt, all at once, each by its own user."""
    started = time.perf_counter()
    logs = await asyncio.gather(*(follow(generate(stub, users.new(), p, CONCURRENCY_TOKENS)) for p in prompts))
    return sum(len(log.token_times) for log in logs) / (time.perf_counter() - started)


async def concurrency(stub: InferenceStub, users: Users, rounds: int) -> None:
    """(c): 4 streams at once over 1, alternately, medians of ``rounds``."""
    one: list[float] = []
    four: list[float] = []
    for r in range(rounds):
        base = 1 + 10_000 * r
        one.append(await streams_at_once(stub, users, [counting_prompt(base)]))
        four.append(await streams_at_once(stub, users, [counting_prompt(base + 1000 * (k + 1)) for k in range(4)]))
    emit("concurrency1_tokens_per_s", median(one))
    emit("concurrency4_tokens_per_s", median(four))
    emit("concurrency4_over_1", median(four) / median(one))


# -- (d) KV reuse across turns -------------------------------------------------------------


@contextlib.asynccontextmanager
async def cassandra_node(home: Path) -> AsyncIterator[Cassandra]:
    """A fresh Cassandra under ``home/cassandra`` with the startup tuning (see the module docstring)."""
    os.environ[TUNING_ENV] = "startup"  # read when the command line is built
    config = CassandraConfig(home=home / "cassandra", native_port=free_port(), storage_port=free_port())
    async with running(Cassandra(config), ready_timeout_s=240) as dep:
        assert isinstance(dep, Cassandra)
        yield dep


async def turn(
    inference: InferenceStub, history: history_pb2_grpc.HistoryServiceStub, auth: Auth, cid: str, text: str
) -> tuple[float, StreamLog]:
    """One turn: the user's message, then the assistant's Reply; (seconds to the first token, the stream)."""
    request = hpb.SendMessageRequest(conversation_id=cid, client_message_id=uuid.uuid4().hex, text=text)
    await history.SendMessage(request, metadata=auth, timeout=10)
    sent = time.perf_counter()
    reply = pb.ReplyRequest(conversation_id=cid, sampling=sampling(REPLY_TOKENS))
    log = await follow(inference.Reply(reply, metadata=auth, timeout=CALL_TIMEOUT_S))
    assert log.token_times and log.finished is not None, "a reply without tokens"
    return log.token_times[0] - sent, log


async def conversations(
    inference: InferenceStub, history: history_pb2_grpc.HistoryServiceStub, users: Users, count: int, turns: int
) -> None:
    """(d): ``count`` conversations of ``turns`` turns, one turn at a time round-robin.

    Each last turn is paired with turn 1 of a fresh conversation timed right after it (the
    load here drifts within the minute between turn 1 and the last turn); the ratio is the
    median of those pairs' ratios.
    """
    people = [users.new() for _ in range(3 * count + 1)]
    create = hpb.CreateConversationRequest(kind=hpb.CONVERSATION_KIND_ASSISTANT)
    cids = [
        (await history.CreateConversation(create, metadata=a, timeout=10)).conversation.conversation_id for a in people
    ]
    await turn(inference, history, people[-1], cids[-1], "Hello!")  # warm-up of history and Reply, not counted
    first: list[StreamLog] = []
    first_s: list[float] = []
    last: list[StreamLog] = []
    last_s: list[float] = []
    pairs: list[float] = []
    same_text_pairs: list[float] = []

    def question(k: int, t: int) -> str:
        return f"Conversation {k}, question {t + 1}: tell me one short fact about the number {7 * t + k}."

    for t in range(turns):
        for k in range(count):
            seconds, log = await turn(inference, history, people[k], cids[k], question(k, t))
            if t == 0:
                first.append(log)
                first_s.append(seconds)
            if t == turns - 1:
                last.append(log)
                last_s.append(seconds)
                fresh_s, fresh = await turn(
                    inference, history, people[count + k], cids[count + k], question(count + k, 0)
                )
                first.append(fresh)
                first_s.append(fresh_s)
                pairs.append(seconds / fresh_s)
                # The same message as turn `turns` in a fresh conversation: the pair differs only in the history.
                same_s, _ = await turn(inference, history, people[2 * count + k], cids[2 * count + k], question(k, t))
                same_text_pairs.append(seconds / same_s)

    def usage(logs: list[StreamLog], name: str) -> float:
        return median([float(getattr(log.finished.usage, name)) for log in logs if log.finished is not None])

    emit("conversations", count)
    emit(f"prompt_tokens_turn{turns}", usage(last, "prompt_tokens"))
    emit(f"cached_prompt_tokens_turn{turns}", usage(last, "cached_prompt_tokens"))
    # Reply's queue_wait_ms runs from its arrival: history reads, tokenizing and the template are in it.
    emit("reply_before_slot_turn1_ms", usage(first, "queue_wait_ms"))
    emit(f"reply_before_slot_turn{turns}_ms", usage(last, "queue_wait_ms"))
    # The service's own time to first token: from the Reply's arrival, history and the slot included.
    emit("server_ttft_turn1_ms", usage(first, "time_to_first_token_ms"))
    emit(f"server_ttft_turn{turns}_ms", usage(last, "time_to_first_token_ms"))
    emit("ttft_turn1_ms", median(first_s) * 1000)
    emit(f"ttft_turn{turns}_ms", median(last_s) * 1000)
    emit(f"ttft_turn{turns}_over_turn1_same_text", median(same_text_pairs))
    emit(f"ttft_turn{turns}_over_turn1", median(pairs))


# -- (e) KV reuse across grounded turns ------------------------------------------------------

GROUNDED_COLLECTION = "reference"
GROUNDED_SECTIONS = 40
GROUNDED_PASSAGE_CHARS = 400


def reference_sections() -> list[tuple[str, str]]:
    """(topic, its first paragraph-sized chunk) of Python's language reference as pydoc ships it."""
    from pydoc_data.topics import topics  # noqa: PLC0415 - only (e) needs it

    sections = []
    for name in sorted(topics)[:GROUNDED_SECTIONS]:
        text = " ".join(topics[name].split())[:GROUNDED_PASSAGE_CHARS]
        sections.append((name, text))
    return sections


async def grounded_collection(ingest: ingest_pb2_grpc.IngestServiceStub, stub: InferenceStub, auth: Auth) -> None:
    """The user's collection of reference sections, embedded with inference's default embedding model."""
    models = (await stub.ListModels(pb.ListModelsRequest(), metadata=auth, timeout=10)).models
    model = next(m for m in models if m.default_for_embed)
    await ingest.CreateCollection(
        ipb.CreateCollectionRequest(
            name=GROUNDED_COLLECTION, vector_size=model.embedding_dimensions, distance=ipb.DISTANCE_COSINE,
            embedding_model=model.name,
        ),
        metadata=auth, timeout=30,
    )  # fmt: skip
    documents = []
    for name, text in reference_sections():
        meta = Struct()
        meta.update({"title": name})
        documents.append(ipb.Document(text=text, metadata=meta))
    await ingest.Upsert(
        ipb.UpsertRequest(collection=GROUNDED_COLLECTION, documents=documents), metadata=auth, timeout=CALL_TIMEOUT_S
    )


async def grounded_turn(
    inference: InferenceStub, history: history_pb2_grpc.HistoryServiceStub, auth: Auth, cid: str, text: str
) -> tuple[float, StreamLog, int]:
    """One grounded turn: (seconds to the first token, the stream, passages cited)."""
    request = hpb.SendMessageRequest(conversation_id=cid, client_message_id=uuid.uuid4().hex, text=text)
    await history.SendMessage(request, metadata=auth, timeout=10)
    sent = time.perf_counter()
    reply = pb.ReplyRequest(conversation_id=cid, sampling=sampling(REPLY_TOKENS), collections=[GROUNDED_COLLECTION])
    cited: list[int] = []
    log = await follow(_counting_citations(inference.Reply(reply, metadata=auth, timeout=CALL_TIMEOUT_S), cited))
    assert log.token_times and log.finished is not None, "a grounded reply without tokens"
    return log.token_times[0] - sent, log, sum(cited)


async def _counting_citations(responses: Any, cited: list[int]) -> AsyncIterator[Any]:
    async for chunk in responses:
        if chunk.HasField("citations"):
            cited.append(len(chunk.citations.citations))
        yield chunk


async def grounded_conversations(
    inference: InferenceStub,
    history: history_pb2_grpc.HistoryServiceStub,
    ingest: ingest_pb2_grpc.IngestServiceStub,
    users: Users,
    count: int,
    turns: int,
) -> None:
    """(e): ``count`` grounded conversations of ``turns`` turns, round-robin; each last turn paired with a fresh one."""
    owner = users.new()
    await grounded_collection(ingest, inference, owner)
    create = hpb.CreateConversationRequest(kind=hpb.CONVERSATION_KIND_ASSISTANT)
    cids = [
        (await history.CreateConversation(create, metadata=owner, timeout=10)).conversation.conversation_id
        for _ in range(2 * count + 1)
    ]
    names = [name for name, _ in reference_sections()]

    def question(k: int, t: int) -> str:
        return f"What does the Python language reference say about {names[(5 * k + 3 * t) % len(names)]}?"

    assert query_of([question(0, 0)]) == question(0, 0)  # a standalone question: searched alone
    await grounded_turn(inference, history, owner, cids[-1], question(count, 0))  # warm-up, not counted
    first_s: list[float] = []
    last: list[StreamLog] = []
    last_s: list[float] = []
    pairs: list[float] = []
    cited: list[int] = []
    for t in range(turns):
        for k in range(count):
            seconds, log, n = await grounded_turn(inference, history, owner, cids[k], question(k, t))
            cited.append(n)
            if t == 0:
                first_s.append(seconds)
            if t == turns - 1:
                last.append(log)
                last_s.append(seconds)
                fresh_s, _, _ = await grounded_turn(inference, history, owner, cids[count + k], question(k, t))
                first_s.append(fresh_s)
                pairs.append(seconds / fresh_s)

    def usage(name: str) -> float:
        return median([float(getattr(log.finished.usage, name)) for log in last if log.finished is not None])

    emit("grounded_conversations", count)
    emit("grounded_passages", median([float(n) for n in cited]))
    emit(f"prompt_tokens_grounded_turn{turns}", usage("prompt_tokens"))
    emit("ttft_grounded_turn1_ms", median(first_s) * 1000)
    emit(f"ttft_grounded_turn{turns}_ms", median(last_s) * 1000)
    emit("cached_prefix_tokens_grounded", usage("cached_prompt_tokens"))
    emit(f"ttft_grounded_turn{turns}_over_turn1", median(pairs))


@contextlib.asynccontextmanager
async def ingest_service(home: Path, port: int, nats_url: str, keys: Keys, inference_port: int) -> AsyncIterator[Any]:
    """The ingest service in this process on ``port`` (embedded store under ``home/ingest``), a stub to it."""
    settings = IngestSettings(
        port=port, nats=NatsSettings(url=nats_url), bus_namespace=uuid.uuid4().hex[:12],
        token_public_key_file=keys.public, inference_target=f"127.0.0.1:{inference_port}",
        data_dir=home / "ingest", import_root=home / "ingest" / "import", snapshot_root=home / "ingest" / "snapshots",
        shutdown_drain_s=0, shutdown_grace_s=1,
    )  # fmt: skip
    app = await assemble_ingest(settings)
    async with app.server, grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield ingest_pb2_grpc.IngestServiceStub(channel)


# -- the run -------------------------------------------------------------------------------


async def run(args: argparse.Namespace, home: Path) -> None:
    """Start NATS and the service, run (a), (b), (c), then Cassandra and history for (d)."""
    keys = make_keys(home)
    users = Users(keys)
    history_port = free_port()  # the service needs it now; history starts for (d) only
    ingest_port = free_port()  # likewise, for (e)
    # Reply stores through history's internal AppendAssistantMessage: inference's own service token.
    service_private, service_public = home / "keys" / "service_token.pem", home / "keys" / "service_token.pub.pem"
    generate_key_pair(service_private, service_public)
    async with nats_server(home) as nats:
        settings = InferenceSettings(
            port=0, nats=NatsSettings(url=nats.url), token_public_key_file=keys.public,
            history_target=f"127.0.0.1:{history_port}", ingest_target=f"127.0.0.1:{ingest_port}",
            service_token_private_key_file=service_private, service_token_public_key_file=service_public,
            grounding_min_score=-1.0, shutdown_drain_s=0, shutdown_grace_s=1,
        )  # fmt: skip
        emit("n_ctx", settings.n_ctx)
        emit("n_threads", settings.n_threads)
        emit("slots", settings.slots)
        # (a) measures the service as clients meet it: its own process, the stream read here.
        port = free_port()
        env = service_env("inference", port, nats, None, keys, {"HISTORY_TARGET": f"127.0.0.1:{history_port}"})
        async with (
            service("inference", home, env, port) as process,
            grpc.aio.insecure_channel(process.target) as channel,
        ):
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            ratio = await streaming_overhead(stub, settings, users.new(), args.rounds, args.tokens, process.proc.pid)
        # (b) to (d) read the service's gauges, so it runs in this process for them.
        app = await build(settings)
        async with app, grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            labels = {"model": settings.default_model}

            def queued() -> float:
                return app.metrics.registry.get_sample_value("chatmesh_inference_queue_depth", labels) or 0.0

            await cancel_latency(stub, users, queued, args.cancel_rounds)
            await concurrency(stub, users, args.concurrency_rounds)
            async with cassandra_node(home) as cassandra:
                extra = {
                    "SENDS_PER_SECOND": "1000", "SEND_BURST": "1000",
                    "SERVICE_TOKEN_PUBLIC_KEY_FILE": str(service_public),
                }  # fmt: skip
                env = service_env("history", history_port, nats, cassandra, keys, extra)
                async with (
                    service("history", home, env, history_port) as history,
                    grpc.aio.insecure_channel(history.target) as history_channel,
                ):
                    history_stub = history_pb2_grpc.HistoryServiceStub(history_channel)
                    await conversations(stub, history_stub, users, args.conversations, args.turns)
                    async with ingest_service(home, ingest_port, nats.url, keys, app.port) as ingest:
                        await grounded_conversations(
                            stub, history_stub, ingest, users, args.grounded_conversations, args.grounded_turns
                        )
    emit("load_avg_1m_end", os.getloadavg()[0])
    emit("ratio_stream_vs_inprocess", ratio)


async def main(args: argparse.Namespace) -> None:
    """Run the benchmark within ``args.limit_s`` and print its figures; everything stops on the way out."""
    emit("cpus", os.cpu_count() or 0)
    emit("load_avg_1m_start", os.getloadavg()[0])
    with scratch("chatmesh-bench-inference-", args.keep) as home:
        async with asyncio.timeout(args.limit_s):
            await run(args, home)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=64, help="decode tokens per stream in (a)")
    parser.add_argument("--rounds", type=int, default=12, help="alternating rounds of (a)")
    parser.add_argument("--cancel-rounds", type=int, default=5, help="cancels in (b)")
    parser.add_argument("--concurrency-rounds", type=int, default=2, help="alternating rounds of (c)")
    parser.add_argument("--conversations", type=int, default=6, help="conversations in (d)")
    parser.add_argument("--turns", type=int, default=20, help="turns of each conversation in (d)")
    parser.add_argument("--grounded-conversations", type=int, default=3, help="grounded conversations in (e)")
    parser.add_argument("--grounded-turns", type=int, default=10, help="turns of each grounded conversation in (e)")
    parser.add_argument("--limit-s", type=float, default=600, help="stop the run (everything) after this long")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory (logs, data)")
    asyncio.run(main(parser.parse_args()))
