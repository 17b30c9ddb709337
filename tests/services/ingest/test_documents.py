"""Document jobs: text files split into passages, embedded by the bundled model through
inference.Embed (workers acting for the job's owner), and found by text afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatmesh.ingest.v1 import ingest_pb2 as pb
from mesh.deps.nats import Nats
from services.runtime.server import ServiceServer
from tests.conftest_ingest import (
    IngestHandle,
    MeshKeys,
    User,
    ingest_settings,
    new_user,
    running_ingest,
    running_workers,
)

MODEL = "smollm2-135m-instruct-q4_1"
DIM = 576

GARDEN = """Tomatoes need six hours of direct sun a day and deep watering twice a week. Stake the
plants early, pinch the suckers that grow between the stem and the branches, and mulch the soil to
keep it evenly moist through the hottest weeks of summer.

Roses are pruned in late winter, just as the buds begin to swell. Cut out dead canes to the base,
open the centre of the bush so air can move through it, and feed the plant with compost once the
first leaves unfold.

Compost heaps work best with two parts brown material, such as dry leaves and straw, to one part
green material like grass clippings and kitchen scraps. Turn the heap every couple of weeks."""

TRAINS = """The night train leaves the capital at ten and reaches the coast at dawn. Sleeper cabins
hold four berths, and the dining car serves soup and bread until midnight.

Freight locomotives haul ore from the northern mines across the long viaduct over the river gorge,
a steel bridge built in the eighteen nineties that still carries forty trains a day.

Signal boxes once controlled every junction by hand with long iron levers; today a single control
centre watches the whole line on screens and sets the points remotely."""


@pytest.fixture
async def docs_ingest(
    nats_server: Nats, mesh_keys: MeshKeys, ingest_inference: ServiceServer, tmp_path: Path
) -> AsyncIterator[IngestHandle]:
    """An ingest service cutting text into passages of at most 400 characters, with one worker."""
    settings = ingest_settings(
        nats_server, mesh_keys, tmp_path, ingest_inference.port, passage_max_chars=400, passage_overlap_chars=40
    )
    async with running_ingest(settings) as ingest, running_workers(settings, 1, ingest_target=ingest.target):
        yield ingest


async def finished(ingest: IngestHandle, user: User, job_id: str) -> pb.Job:
    async for _ in ingest.stub.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=user.metadata, timeout=300):
        pass
    return (await ingest.stub.GetJob(pb.GetJobRequest(job_id=job_id), metadata=user.metadata)).job


async def test_text_files_are_chunked_embedded_and_found_by_a_passage_of_them(
    docs_ingest: IngestHandle, mesh_keys: MeshKeys
) -> None:
    ingest = docs_ingest
    ann = new_user(mesh_keys)
    await ingest.stub.CreateCollection(
        pb.CreateCollectionRequest(name="library", vector_size=DIM, distance=pb.DISTANCE_COSINE, embedding_model=MODEL),
        metadata=ann.metadata,
    )
    root = ingest.settings.import_root
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "garden.txt").write_text(GARDEN)
    (root / "notes" / "trains.md").write_text(TRAINS)
    for path in ("notes/garden.txt", "notes/trains.md"):
        started = await ingest.stub.StartJob(
            pb.StartJobRequest(collection="library", source=pb.JobSource(path=path)), metadata=ann.metadata
        )
        job = await finished(ingest, ann, started.job.job_id)
        assert job.progress.state == pb.JOB_STATE_SUCCEEDED
        assert job.progress.points_done == job.progress.points_total >= 2  # cut into passages
    # Whole sentences taken from the files; each must bring back a passage that holds it.
    queries = {
        "Tomatoes need six hours of direct sun a day and deep watering twice a week.": "notes/garden.txt",
        "Roses are pruned in late winter, just as the buds begin to swell.": "notes/garden.txt",
        "Turn the heap every couple of weeks.": "notes/garden.txt",
        "The night train leaves the capital at ten and reaches the coast at dawn.": "notes/trains.md",
        "Sleeper cabins hold four berths, and the dining car serves soup and bread until midnight.": "notes/trains.md",
        "Signal boxes once controlled every junction by hand with long iron levers; today a single control "
        "centre watches the whole line on screens and sets the points remotely.": "notes/trains.md",
    }
    for query, source in queries.items():
        found = await ingest.stub.Search(
            pb.SearchRequest(collection="library", text=query, limit=1), metadata=ann.metadata
        )
        top = found.points[0].payload
        assert query in " ".join(top["text"].split()), (query, top["text"][:60])  # the passage it came from
        assert top["source"] == source and top["passage"] >= 1


async def test_inline_documents_are_a_job_too(docs_ingest: IngestHandle, mesh_keys: MeshKeys) -> None:
    ingest = docs_ingest
    ann = new_user(mesh_keys)
    await ingest.stub.CreateCollection(
        pb.CreateCollectionRequest(name="faq", vector_size=DIM, distance=pb.DISTANCE_COSINE, embedding_model=MODEL),
        metadata=ann.metadata,
    )
    texts = [p.replace("\n", " ") for p in GARDEN.split("\n\n")]
    started = await ingest.stub.StartJob(
        pb.StartJobRequest(
            collection="faq",
            source=pb.JobSource(documents=pb.InlineDocuments(documents=[pb.Document(text=t) for t in texts])),
        ),
        metadata=ann.metadata,
    )
    job = await finished(ingest, ann, started.job.job_id)
    assert job.progress.state == pb.JOB_STATE_SUCCEEDED and job.progress.points_done == 3
    found = await ingest.stub.Search(
        pb.SearchRequest(collection="faq", text="Cut out dead canes to the base.", limit=1),
        metadata=ann.metadata,
    )
    assert found.points[0].payload["text"].startswith("Roses are pruned")
