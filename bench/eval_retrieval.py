"""make eval-retrieval: held-out retrieval on Python's language reference, all-MiniLM-L6-v2 against the chat model.

The corpus is 57 sections of the language reference as CPython ships them
(``pydoc_data.topics``), each written to a text file and ingested the way a user's files
are: a StartJob per file on the real ingest service (in this process, with its embedded
Qdrant Edge store, a NATS server of its own and one worker), which cuts the text into
passages (the service's defaults: 600 characters, 60 of overlap) and embeds them through
the real inference.Embed. Then each of the questions (bench/retrieval_questions.py: 83,
phrased as a person asks, with the verbatim phrase that answers each) is a Search by text
for the top 5 passages; a question counts as found when one of them contains its answer.

The same corpus and questions go through two collections: one embedded by Embed's default
model (all-MiniLM-L6-v2, converted at setup: ``make embed-model``), one by the bundled chat
model (SmolLM2-135M with the PromptEOL template). Prints ``key=value`` lines, the chat
model's figures first, ``recall_at_5=`` (MiniLM) last; the questions missed go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from pydoc_data.topics import topics

import grpc

from bench.harness import make_keys, nats_server, scratch
from bench.retrieval_questions import QUESTIONS, TOPICS, Question
from bench.stats import emit
from chatmesh.inference.v1 import inference_pb2, inference_pb2_grpc
from chatmesh.ingest.v1 import ingest_pb2 as pb
from chatmesh.ingest.v1 import ingest_pb2_grpc
from mesh.deps.nats import Nats
from services.inference import minilm
from services.inference.server import build as build_inference
from services.inference.settings import BUNDLED_MODEL_NAME, InferenceSettings
from services.ingest.server import assemble
from services.ingest.settings import IngestSettings
from services.ingest.worker import run_worker
from services.runtime.bus import NatsSettings
from services.runtime.tokens import Principal, generate_key_pair

K = 5


def normalised(text: str) -> str:
    """``text`` with every run of whitespace one space (passages keep the reference's line breaks)."""
    return " ".join(text.split())


def check_questions() -> None:
    """Every question's topic is in the corpus and its evidence is in that topic's text.

    Raises:
        SystemExit: a question that could never be found (a typo in its evidence).
    """
    for question in QUESTIONS:
        if question.topic not in TOPICS or normalised(question.evidence) not in normalised(topics[question.topic]):
            raise SystemExit(f"question {question.text!r}: its evidence is not in section {question.topic!r}")


@dataclass
class Mesh:
    """The services of the run and a user's call metadata."""

    ingest: ingest_pb2_grpc.IngestServiceStub
    inference: inference_pb2_grpc.InferenceServiceStub
    auth: tuple[tuple[str, str], ...]
    import_root: Path


@contextlib.asynccontextmanager
async def mesh(home: Path, nats: Nats) -> AsyncIterator[Mesh]:
    """Inference, ingest and one ingest worker in this process, on free ports; a user token."""
    keys = make_keys(home)
    service_private, service_public = home / "keys" / "service_token.pem", home / "keys" / "service_token.pub.pem"
    generate_key_pair(service_private, service_public)
    inference = await build_inference(
        InferenceSettings(
            port=0,
            nats=NatsSettings(url=nats.url),
            token_public_key_file=keys.public,
            service_token_public_key_file=service_public,
            n_ctx=2048,
            slots=1,
            embed_queue_size=256,
            embed_queued_per_user=64,
            history_target="127.0.0.1:9",
            shutdown_drain_s=0,
            shutdown_grace_s=0.5,
        )
    )
    ingest_settings = IngestSettings(
        port=0,
        nats=NatsSettings(url=nats.url),
        bus_namespace=uuid.uuid4().hex[:12],
        token_public_key_file=keys.public,
        service_token_public_key_file=service_public,
        service_token_private_key_file=service_private,
        inference_target=f"127.0.0.1:{inference.port}",
        inference_timeout_s=600,  # the chat model embeds a batch of passages in tens of seconds here
        embed_batch_texts=8,
        max_active_jobs_per_user=len(TOPICS),
        data_dir=home / "ingest",
        import_root=home / "import",
        snapshot_root=home / "snapshots",
        shutdown_drain_s=0,
        shutdown_grace_s=1,
    )
    stop = asyncio.Event()
    async with inference:
        app = await assemble(ingest_settings)
        async with app.server:
            worker_settings = ingest_settings.model_copy(update={"ingest_target": f"127.0.0.1:{app.server.port}"})
            worker = asyncio.create_task(run_worker(worker_settings, "eval-worker", stop))
            try:
                async with (
                    grpc.aio.insecure_channel(f"127.0.0.1:{app.server.port}") as ingest_channel,
                    grpc.aio.insecure_channel(f"127.0.0.1:{inference.port}") as inference_channel,
                ):
                    user = Principal(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()))
                    token = keys.signer().sign(user).token
                    yield Mesh(
                        ingest_pb2_grpc.IngestServiceStub(ingest_channel),
                        inference_pb2_grpc.InferenceServiceStub(inference_channel),
                        (("authorization", f"Bearer {token}"),),
                        ingest_settings.import_root,
                    )
            finally:
                stop.set()
                await worker


async def ingest_corpus(run: Mesh, collection: str, model: str) -> tuple[int, float]:
    """A collection embedded by ``model``, every section a StartJob; (passages, seconds)."""
    listed = await run.inference.ListModels(inference_pb2.ListModelsRequest(), metadata=run.auth)
    dimensions = next(m.embedding_dimensions for m in listed.models if m.name == model)
    await run.ingest.CreateCollection(
        pb.CreateCollectionRequest(
            name=collection, vector_size=dimensions, distance=pb.DISTANCE_COSINE, embedding_model=model
        ),
        metadata=run.auth,
    )
    started = time.perf_counter()
    jobs = []
    for topic in TOPICS:
        started_job = await run.ingest.StartJob(
            pb.StartJobRequest(collection=collection, source=pb.JobSource(path=f"pyref/{topic}.txt")),
            metadata=run.auth,
        )
        jobs.append(started_job.job.job_id)
    passages = 0
    for job_id in jobs:
        async for _ in run.ingest.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=run.auth, timeout=3600):
            pass
        job = (await run.ingest.GetJob(pb.GetJobRequest(job_id=job_id), metadata=run.auth)).job
        if job.progress.state != pb.JOB_STATE_SUCCEEDED:
            state = pb.JobState.Name(job.progress.state)
            why = job.error or job.progress.last_error or [f.reason for f in job.failures][:3]
            raise SystemExit(f"{collection}: the job of {job.progress.job_id or job_id} ended {state}: {why}")
        passages += job.progress.points_done
    return passages, time.perf_counter() - started


@dataclass(frozen=True)
class Scores:
    """Recall at 1 and at K, and the questions missed at K with the sections they got instead."""

    at_1: float
    at_k: float
    missed: list[tuple[Question, list[str]]]


async def ask(run: Mesh, collection: str) -> Scores:
    """Every question as a Search by text for the top K passages."""
    first = found = 0
    missed = []
    for question in QUESTIONS:
        answer = await run.ingest.Search(
            pb.SearchRequest(collection=collection, text=question.text, limit=K), metadata=run.auth
        )
        evidence = normalised(question.evidence)
        hits = [evidence in normalised(point.payload["text"]) for point in answer.points]
        first += bool(hits and hits[0])
        if any(hits):
            found += 1
        else:
            missed.append((question, [str(p.payload["source"]) for p in answer.points]))
    return Scores(first / len(QUESTIONS), found / len(QUESTIONS), missed)


async def evaluate(home: Path, with_chat_model: bool) -> None:
    check_questions()
    async with nats_server(home) as nats, mesh(home, nats) as run:
        corpus = run.import_root / "pyref"
        corpus.mkdir(parents=True)
        for topic in TOPICS:
            (corpus / f"{topic}.txt").write_text(topics[topic], encoding="utf-8")
        emit("sections", len(TOPICS))
        emit("questions", len(QUESTIONS))
        emit("corpus_chars", sum(len(topics[t]) for t in TOPICS))
        runs = [("minilm", minilm.MINILM_NAME)]
        if with_chat_model:
            runs.insert(0, ("chat_model", BUNDLED_MODEL_NAME))
        results: dict[str, tuple[int, float, Scores]] = {}
        for label, model in runs:
            passages, seconds = await ingest_corpus(run, f"pyref-{label.replace('_', '-')}", model)
            scores = await ask(run, f"pyref-{label.replace('_', '-')}")
            results[label] = (passages, seconds, scores)
            for question, got in scores.missed:
                print(f"# {label} missed ({question.topic}): {question.text} -> {got}", file=sys.stderr, flush=True)
        if with_chat_model:
            passages, seconds, scores = results["chat_model"]
            emit("ingest_s_chat_model", seconds)
            emit("recall_at_1_chat_model", scores.at_1)
            emit("recall_at_5_chat_model", scores.at_k)
        passages, seconds, scores = results["minilm"]
        emit("passages", passages)
        emit("ingest_s", seconds)
        emit("recall_at_1", scores.at_1)
        emit("recall_at_5", scores.at_k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--no-chat-model", action="store_true", help="skip the chat model's run (minutes)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    with scratch("chatmesh-eval-retrieval-", args.keep) as home:
        asyncio.run(evaluate(home, with_chat_model=not args.no_chat_model))


if __name__ == "__main__":
    main()
