"""One contract for both vector stores: Qdrant Edge in-process and a real Qdrant server.

Every test here runs twice, ``[embedded]`` and ``[server]``; the server run is skipped (with
the reason) where no Qdrant binary is found. The cluster test at the end kills a node.
"""

from __future__ import annotations

import asyncio
import math
import random
import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from mesh.deps.qdrant import Qdrant
from services.ingest.errors import CollectionNotFound
from services.ingest.store.base import CollectionSpec, PayloadMatch, StoredPoint, VectorQuery, VectorStore
from services.ingest.store.edge import EdgeStore
from services.ingest.store.server import ServerOptions, ServerStore
from tests.conftest_ingest import start_cluster

DIM = 8


def unit(seed: int, dim: int = DIM) -> list[float]:
    rng = random.Random(seed)
    vector = [rng.uniform(-1, 1) for _ in range(dim)]
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector]


def movie(i: int) -> StoredPoint:
    return StoredPoint(
        i,
        unit(i),
        {
            "title": f"movie {i}",
            "genre": ["drama", "comedy", "horror"][i % 3],
            "year": 1950 + i % 70,
            "color": i % 2 == 0,
        },
    )


SPEC = CollectionSpec(DIM, "cosine", {"genre": "keyword", "year": "integer", "color": "bool"})


@pytest.fixture(params=["embedded", "server"])
def backend(request: pytest.FixtureRequest) -> Qdrant | None:
    """None for the embedded store; the run's Qdrant server for the server store (skipped without one)."""
    if request.param == "embedded":
        return None
    server: Qdrant = request.getfixturevalue("qdrant_server")
    return server


@pytest.fixture
async def store(backend: Qdrant | None, tmp_path: Path) -> AsyncIterator[VectorStore]:
    """Each backend in turn: an Edge store in a temporary folder, the run's Qdrant server."""
    if backend is None:
        made: VectorStore = EdgeStore(tmp_path / "shards")
    else:
        made = ServerStore([backend.url], backend.config.grpc_port, ServerOptions())
    try:
        yield made
    finally:
        await made.close()


def name() -> str:
    return f"c{uuid.uuid4().hex}"


async def test_upserted_points_are_counted_and_found_nearest_first(store: VectorStore) -> None:
    collection = name()
    await store.create_collection(collection, SPEC)
    await store.upsert(collection, [movie(i) for i in range(300)])
    assert await store.count(collection) == 300
    hits = await store.search(collection, VectorQuery(unit(42), limit=5))
    assert hits[0].id == 42
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[0].payload["title"] == "movie 42"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len(hits) == 5


async def test_upserting_the_same_ids_again_replaces_instead_of_duplicating(store: VectorStore) -> None:
    collection = name()
    await store.create_collection(collection, SPEC)
    await store.upsert(collection, [movie(i) for i in range(50)])
    await store.upsert(collection, [StoredPoint(i, unit(i), {"title": "again"}) for i in range(50)])
    assert await store.count(collection) == 50
    hits = await store.search(collection, VectorQuery(unit(7), limit=1))
    assert hits[0].payload == {"title": "again"}


async def test_uuid_and_integer_ids_are_different_points(store: VectorStore) -> None:
    collection = name()
    await store.create_collection(collection, SPEC)
    text_id = str(uuid.uuid4())
    await store.upsert(
        collection, [StoredPoint(1, unit(1), {"k": "num"}), StoredPoint(text_id, unit(2), {"k": "uuid"})]
    )
    assert await store.count(collection) == 2
    hits = await store.search(collection, VectorQuery(unit(2), limit=1))
    assert hits[0].id == text_id
    assert hits[0].payload == {"k": "uuid"}


async def test_payload_matches_filter_the_results(store: VectorStore) -> None:
    collection = name()
    await store.create_collection(collection, SPEC)
    await store.upsert(collection, [movie(i) for i in range(90)])
    dramas = await store.search(collection, VectorQuery(unit(1), limit=100, matches=[PayloadMatch("genre", "drama")]))
    assert len(dramas) == 30
    assert all(h.payload["genre"] == "drama" for h in dramas)
    both = await store.search(
        collection,
        VectorQuery(unit(1), limit=100, matches=[PayloadMatch("genre", "drama"), PayloadMatch("color", True)]),
    )
    assert {h.id for h in both} == {i for i in range(90) if i % 3 == 0 and i % 2 == 0}
    year = await store.search(collection, VectorQuery(unit(1), limit=100, matches=[PayloadMatch("year", 1953)]))
    assert {h.id for h in year} == {3, 73}


async def test_score_threshold_keeps_only_close_enough_points(store: VectorStore) -> None:
    collection = name()
    await store.create_collection(collection, SPEC)
    await store.upsert(collection, [movie(i) for i in range(100)])
    hits = await store.search(collection, VectorQuery(unit(5), limit=100, score_threshold=0.999))
    assert [h.id for h in hits] == [5]


async def test_euclid_threshold_is_a_maximum_distance(store: VectorStore) -> None:
    collection = name()
    await store.create_collection(collection, CollectionSpec(2, "euclid"))
    await store.upsert(
        collection, [StoredPoint(1, [0.0, 0.0], {}), StoredPoint(2, [3.0, 4.0], {}), StoredPoint(3, [6.0, 8.0], {})]
    )
    hits = await store.search(collection, VectorQuery([0.0, 0.0], limit=3, score_threshold=5.5))
    assert [h.id for h in hits] == [1, 2]
    assert hits[1].score == pytest.approx(5.0)


async def test_with_vectors_returns_the_stored_vector(store: VectorStore) -> None:
    collection = name()
    await store.create_collection(collection, CollectionSpec(3, "dot"))
    await store.upsert(collection, [StoredPoint(9, [0.5, -1.0, 2.0], {"a": {"b": [1, 2]}})])
    (hit,) = await store.search(collection, VectorQuery([1.0, 0.0, 0.0], limit=1, with_vectors=True))
    assert hit.vector == pytest.approx([0.5, -1.0, 2.0])
    assert hit.payload == {"a": {"b": [1, 2]}}
    assert hit.score == pytest.approx(0.5)


async def test_scroll_pages_through_every_point_with_vector_and_payload(store: VectorStore) -> None:
    collection = name()
    await store.create_collection(collection, SPEC)
    await store.upsert(collection, [movie(i) for i in range(250)])
    seen: dict[int | str, StoredPoint] = {}
    offset = None
    while True:
        page, offset = await store.scroll(collection, offset, 100)
        for point in page:
            seen[point.id] = point
        if offset is None:
            break
    assert sorted(seen) == list(range(250))
    assert seen[17].payload["title"] == "movie 17"
    assert list(seen[17].vector) == pytest.approx(unit(17), abs=1e-6)


async def test_a_deleted_collection_is_gone_and_deleting_again_is_fine(store: VectorStore) -> None:
    collection = name()
    await store.create_collection(collection, SPEC)
    await store.upsert(collection, [movie(1)])
    assert await store.collection_exists(collection)
    await store.delete_collection(collection)
    assert not await store.collection_exists(collection)
    await store.delete_collection(collection)
    with pytest.raises(CollectionNotFound):
        await store.count(collection)


async def test_an_unknown_collection_is_not_found(store: VectorStore) -> None:
    missing = name()
    with pytest.raises(CollectionNotFound):
        await store.upsert(missing, [movie(1)])
    with pytest.raises(CollectionNotFound):
        await store.search(missing, VectorQuery(unit(1), limit=1))
    with pytest.raises(CollectionNotFound):
        await store.count(missing)


async def test_bulk_mode_keeps_every_point_searchable(store: VectorStore) -> None:
    collection = name()
    await store.create_collection(collection, SPEC)
    await store.set_bulk_mode(collection, True)
    await asyncio.gather(
        *(store.upsert(collection, [movie(i) for i in range(k, k + 100)]) for k in range(0, 1000, 100))
    )
    await store.set_bulk_mode(collection, False)
    assert await store.count(collection) == 1000
    assert (await store.search(collection, VectorQuery(unit(999), limit=1)))[0].id == 999


async def test_points_survive_reopening_the_store(tmp_path: Path, qdrant_server: Qdrant) -> None:
    for make in (
        lambda: EdgeStore(tmp_path / "shards"),
        lambda: ServerStore([qdrant_server.url], qdrant_server.config.grpc_port, ServerOptions()),
    ):
        collection = name()
        first: VectorStore = make()
        await first.create_collection(collection, SPEC)
        await first.upsert(collection, [movie(i) for i in range(20)])
        await first.close()
        second: VectorStore = make()
        try:
            assert await second.count(collection) == 20
            assert (await second.search(collection, VectorQuery(unit(3), limit=1)))[0].id == 3
        finally:
            await second.close()


async def test_a_three_node_cluster_keeps_answering_with_one_node_killed(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        nodes = await start_cluster(stack, tmp_path)
        store = ServerStore([n.dep.url for n in nodes], None, ServerOptions(shard_number=3, replication_factor=2))
        stack.push_async_callback(store.close)
        collection = name()
        await store.create_collection(collection, SPEC)
        await store.upsert(collection, [movie(i) for i in range(1000)])
        assert await store.count(collection) == 1000
        before = [h.id for h in await store.search(collection, VectorQuery(unit(500), limit=10))]
        nodes[0].proc.send_signal(signal.SIGKILL)  # the node the store was talking to
        await nodes[0].proc.wait()
        assert await store.count(collection) == 1000
        after = [h.id for h in await store.search(collection, VectorQuery(unit(500), limit=10))]
        assert after == before
        assert after[0] == 500
