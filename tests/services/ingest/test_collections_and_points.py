"""Collections, Upsert, StreamUpsert and Search on the real service (embedded store, real NATS,
the bundled model in a real inference service): owners, bad input, nothing half-written."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2

from chatmesh.inference.v1 import inference_pb2, inference_pb2_grpc
from chatmesh.ingest.v1 import ingest_pb2 as pb
from mesh.deps.nats import Nats
from mesh.deps.qdrant import Qdrant
from services.runtime.server import ServiceServer
from tests.conftest_ingest import IngestHandle, MeshKeys, User, ingest_settings, new_user, running_ingest

DIM = 16


def vec(seed: int, dim: int = DIM) -> list[float]:
    rng = random.Random(seed)
    v = [rng.uniform(-1, 1) for _ in range(dim)]
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def point(i: int, dim: int = DIM, **payload: object) -> pb.Point:
    body = struct_pb2.Struct()
    body.update({"title": f"movie {i}", "genre": ["drama", "comedy"][i % 2], "year": 1990 + i, **payload})
    return pb.Point(id=pb.PointId(num=i), vector=vec(i, dim), payload=body)


async def create(ingest: IngestHandle, user: User, name: str = "movies", **fields: object) -> pb.Collection:
    request = pb.CreateCollectionRequest(name=name, vector_size=DIM, distance=pb.DISTANCE_COSINE, **fields)  # type: ignore[arg-type]
    answer = await ingest.stub.CreateCollection(request, metadata=user.metadata)
    return answer.collection


async def count(ingest: IngestHandle, user: User, name: str) -> int:
    listed = await ingest.stub.ListCollections(pb.ListCollectionsRequest(), metadata=user.metadata)
    return next(c.points_count for c in listed.collections if c.name == name)


async def code_of(call: object) -> tuple[grpc.StatusCode, str]:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    raise AssertionError("the call succeeded")


async def test_a_collection_is_created_listed_and_deleted_by_its_owner(
    ingest: IngestHandle, mesh_keys: MeshKeys
) -> None:
    ann = new_user(mesh_keys)
    made = await create(ingest, ann, payload_indexes=[pb.PayloadIndex(key="genre", type=pb.PAYLOAD_INDEX_TYPE_KEYWORD)])
    assert (made.name, made.vector_size, made.distance, made.points_count) == ("movies", DIM, pb.DISTANCE_COSINE, 0)
    await create(ingest, ann, "books")
    listed = await ingest.stub.ListCollections(pb.ListCollectionsRequest(), metadata=ann.metadata)
    assert [c.name for c in listed.collections] == ["books", "movies"]
    assert listed.collections[1].payload_indexes[0].key == "genre"
    await ingest.stub.DeleteCollection(pb.DeleteCollectionRequest(name="books"), metadata=ann.metadata)
    listed = await ingest.stub.ListCollections(pb.ListCollectionsRequest(), metadata=ann.metadata)
    assert [c.name for c in listed.collections] == ["movies"]
    code, _ = await code_of(
        ingest.stub.DeleteCollection(pb.DeleteCollectionRequest(name="books"), metadata=ann.metadata)
    )
    assert code == grpc.StatusCode.NOT_FOUND


async def test_another_users_collection_is_not_found_and_names_are_per_owner(
    ingest: IngestHandle, mesh_keys: MeshKeys
) -> None:
    ann, bob = new_user(mesh_keys), new_user(mesh_keys)
    await create(ingest, ann)
    await ingest.stub.Upsert(pb.UpsertRequest(collection="movies", points=[point(1)]), metadata=ann.metadata)
    for call in (
        ingest.stub.Upsert(pb.UpsertRequest(collection="movies", points=[point(2)]), metadata=bob.metadata),
        ingest.stub.Search(pb.SearchRequest(collection="movies", vector=vec(1)), metadata=bob.metadata),
        ingest.stub.DeleteCollection(pb.DeleteCollectionRequest(name="movies"), metadata=bob.metadata),
        ingest.stub.CreateSnapshot(
            pb.CreateSnapshotRequest(collection="movies", target=pb.SnapshotTarget(local=pb.LocalDirectory())),
            metadata=bob.metadata,
        ),
    ):
        code, details = await code_of(call)
        assert code == grpc.StatusCode.NOT_FOUND
        assert "movies" in details
    listed = await ingest.stub.ListCollections(pb.ListCollectionsRequest(), metadata=bob.metadata)
    assert list(listed.collections) == []
    await create(ingest, bob)  # bob's own "movies" is another collection
    assert await count(ingest, bob, "movies") == 0
    assert await count(ingest, ann, "movies") == 1


async def test_creating_a_collection_twice_or_with_bad_fields_is_refused(
    ingest: IngestHandle, mesh_keys: MeshKeys
) -> None:
    ann = new_user(mesh_keys)
    await create(ingest, ann)
    code, details = await code_of(create(ingest, ann))
    assert code == grpc.StatusCode.ALREADY_EXISTS and "movies" in details
    code, details = await code_of(create(ingest, ann, "Bad Name"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("name")
    code, details = await code_of(
        ingest.stub.CreateCollection(
            pb.CreateCollectionRequest(name="x", vector_size=0, distance=1), metadata=ann.metadata
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("vector_size")
    twice = [pb.PayloadIndex(key="a", type=pb.PAYLOAD_INDEX_TYPE_KEYWORD)] * 2
    code, details = await code_of(create(ingest, ann, "y", payload_indexes=twice))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("payload_indexes")


async def test_an_embedding_model_must_exist_and_match_the_vector_size(
    ingest: IngestHandle, mesh_keys: MeshKeys
) -> None:
    ann = new_user(mesh_keys)
    code, details = await code_of(create(ingest, ann, "docs", embedding_model="no-such-model"))
    assert code == grpc.StatusCode.NOT_FOUND and "no-such-model" in details
    model = await bundled_model(ingest, ann)
    code, details = await code_of(create(ingest, ann, "docs", embedding_model=model.name))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("vector_size") and str(model.embedding_dimensions) in details


async def test_a_batch_with_a_bad_point_is_refused_whole_naming_the_point(
    ingest: IngestHandle, mesh_keys: MeshKeys
) -> None:
    ann = new_user(mesh_keys)
    await create(ingest, ann)
    good = [point(i) for i in range(3)]
    short = pb.Point(id=pb.PointId(num=9), vector=vec(9, DIM - 1))
    nan = pb.Point(id=pb.PointId(num=9), vector=[math.nan] + vec(9)[1:])
    inf = pb.Point(id=pb.PointId(num=9), vector=vec(9)[:-1] + [math.inf])
    huge = point(9, text="x" * (65 * 1024))
    cases = [
        ([good[0], short, good[1]], "points[1].vector", "15 floats"),
        ([good[0], good[1], nan], "points[2].vector", "NaN"),
        ([inf], "points[0].vector", "infinity"),
        ([good[0], huge], "points[1].payload", "bytes"),
    ]
    for points, field, words in cases:
        code, details = await code_of(
            ingest.stub.Upsert(pb.UpsertRequest(collection="movies", points=points), metadata=ann.metadata)
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith(field) and words in details
    assert await count(ingest, ann, "movies") == 0  # nothing of a refused batch was written
    code, details = await code_of(
        ingest.stub.Upsert(pb.UpsertRequest(collection="nowhere", points=good), metadata=ann.metadata)
    )
    assert code == grpc.StatusCode.NOT_FOUND and "nowhere" in details
    code, details = await code_of(ingest.stub.Upsert(pb.UpsertRequest(collection="movies"), metadata=ann.metadata))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_upserted_points_are_found_filtered_and_thresholded(ingest: IngestHandle, mesh_keys: MeshKeys) -> None:
    ann = new_user(mesh_keys)
    await create(ingest, ann, payload_indexes=[pb.PayloadIndex(key="genre", type=pb.PAYLOAD_INDEX_TYPE_KEYWORD)])
    answer = await ingest.stub.Upsert(
        pb.UpsertRequest(collection="movies", points=[point(i) for i in range(200)]), metadata=ann.metadata
    )
    assert answer.points_upserted == 200
    await ingest.stub.Upsert(
        pb.UpsertRequest(collection="movies", points=[point(i) for i in range(50)]), metadata=ann.metadata
    )
    assert await count(ingest, ann, "movies") == 200  # the same ids again: replaced, not added
    found = await ingest.stub.Search(
        pb.SearchRequest(collection="movies", vector=vec(77), limit=3), metadata=ann.metadata
    )
    assert found.points[0].id.num == 77
    assert found.points[0].payload["title"] == "movie 77"
    assert found.points[0].payload["year"] == 2067
    assert len(found.points) == 3
    comedies = await ingest.stub.Search(
        pb.SearchRequest(
            collection="movies",
            vector=vec(77),
            limit=100,
            filter=[pb.PayloadMatch(key="genre", string_value="comedy")],
        ),
        metadata=ann.metadata,
    )
    assert len(comedies.points) == 100 and all(p.payload["genre"] == "comedy" for p in comedies.points)
    close = await ingest.stub.Search(
        pb.SearchRequest(collection="movies", vector=vec(5), limit=10, score_threshold=0.999, with_vectors=True),
        metadata=ann.metadata,
    )
    assert [p.id.num for p in close.points] == [5]
    assert list(close.points[0].vector) == pytest.approx(vec(5), abs=1e-6)
    code, details = await code_of(
        ingest.stub.Search(pb.SearchRequest(collection="movies", vector=vec(1, 3)), metadata=ann.metadata)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("vector")


async def stream(requests: list[pb.StreamUpsertRequest]) -> AsyncIterator[pb.StreamUpsertRequest]:
    for request in requests:
        yield request


async def test_stream_upsert_applies_batches_in_order_and_names_the_failing_batch(
    ingest: IngestHandle, mesh_keys: MeshKeys
) -> None:
    ann = new_user(mesh_keys)
    await create(ingest, ann)
    batches = [
        pb.StreamUpsertRequest(collection="movies", points=[point(i) for i in range(k, k + 100)]) for k in (0, 100, 200)
    ]
    totals = await ingest.stub.StreamUpsert(stream(batches), metadata=ann.metadata)
    assert (totals.batches, totals.points_upserted) == (3, 300)
    assert await count(ingest, ann, "movies") == 300
    bad = pb.StreamUpsertRequest(
        collection="movies", points=[point(1000), pb.Point(id=pb.PointId(num=1001), vector=[1.0])]
    )
    more = [pb.StreamUpsertRequest(collection="movies", points=[point(i) for i in range(300, 310)]), bad, batches[0]]
    code, details = await code_of(ingest.stub.StreamUpsert(stream(more), metadata=ann.metadata))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("batch 1: points[1].vector")
    assert await count(ingest, ann, "movies") == 310  # batch 0 stays applied, batch 1 wrote nothing
    other = [batches[0], pb.StreamUpsertRequest(collection="books", points=[point(1)])]
    code, details = await code_of(ingest.stub.StreamUpsert(stream(other), metadata=ann.metadata))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("batch 1: collection")


async def bundled_model(ingest: IngestHandle, user: User) -> inference_pb2.Model:
    inference = inference_pb2_grpc.InferenceServiceStub(grpc.aio.insecure_channel(ingest.settings.inference_target))
    models = await inference.ListModels(inference_pb2.ListModelsRequest(), metadata=user.metadata)
    return next(m for m in models.models if m.default_for_embed)


async def test_documents_are_embedded_and_found_by_text(ingest: IngestHandle, mesh_keys: MeshKeys) -> None:
    ann = new_user(mesh_keys)
    model = await bundled_model(ingest, ann)
    await ingest.stub.CreateCollection(
        pb.CreateCollectionRequest(
            name="notes",
            vector_size=model.embedding_dimensions,
            distance=pb.DISTANCE_COSINE,
            embedding_model=model.name,
        ),
        metadata=ann.metadata,
    )
    texts = [
        "The cat sat on the warm windowsill and purred all afternoon.",
        "Quarterly revenue grew by twelve percent thanks to strong exports.",
        "To bake bread, knead the dough and let it rise for an hour.",
    ]
    meta = struct_pb2.Struct()
    meta.update({"lang": "en"})
    answer = await ingest.stub.Upsert(
        pb.UpsertRequest(collection="notes", documents=[pb.Document(text=t, metadata=meta) for t in texts]),
        metadata=ann.metadata,
    )
    assert (answer.points_upserted, answer.documents_embedded) == (3, 3)
    found = await ingest.stub.Search(
        pb.SearchRequest(collection="notes", text="how do I bake bread dough", limit=1), metadata=ann.metadata
    )
    assert found.points[0].payload["text"] == texts[2]
    assert found.points[0].payload["lang"] == "en"
    again = await ingest.stub.Upsert(
        pb.UpsertRequest(collection="notes", documents=[pb.Document(text=texts[0])]), metadata=ann.metadata
    )
    assert again.points_upserted == 1
    assert await count(ingest, ann, "notes") == 3  # the same text again has the same id


async def test_documents_or_text_into_a_vectors_only_collection_are_refused(
    ingest: IngestHandle, mesh_keys: MeshKeys
) -> None:
    ann = new_user(mesh_keys)
    await create(ingest, ann)
    for call in (
        ingest.stub.Upsert(
            pb.UpsertRequest(collection="movies", documents=[pb.Document(text="hi")]), metadata=ann.metadata
        ),
        ingest.stub.Search(pb.SearchRequest(collection="movies", text="hi"), metadata=ann.metadata),
    ):
        code, details = await code_of(call)
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "embedding model" in details


async def test_per_user_quotas_answer_resource_exhausted_with_a_retry_hint(
    nats_server: Nats, mesh_keys: MeshKeys, ingest_inference: ServiceServer, tmp_path: object
) -> None:
    settings = ingest_settings(nats_server, mesh_keys, tmp_path, ingest_inference.port, max_collections_per_user=2)  # type: ignore[arg-type]
    async with running_ingest(settings) as ingest:
        ann, bob = new_user(mesh_keys), new_user(mesh_keys)
        await create(ingest, ann, "a")
        await create(ingest, ann, "b")
        try:
            await create(ingest, ann, "c")
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert dict(exc.trailing_metadata() or ())["retry-after-ms"] == "1000"
        else:
            raise AssertionError("a third collection was created")
        await create(ingest, bob, "a")  # another user's quota is their own


async def test_a_replica_that_wrote_before_never_writes_into_a_collection_deleted_or_recreated_on_another(
    nats_server: Nats, mesh_keys: MeshKeys, ingest_inference: ServiceServer, qdrant_server: Qdrant, tmp_path: Path
) -> None:
    """Two replicas on one Qdrant server: what B remembers of a collection for its writes goes stale
    when A deletes or re-creates it, and B's writes follow what A did."""
    namespace = uuid.uuid4().hex[:12]
    settings = [
        ingest_settings(
            nats_server, mesh_keys, tmp_path / name, ingest_inference.port, qdrant_url=qdrant_server.url,
            bus_namespace=namespace,
        )
        for name in ("a", "b")
    ]  # fmt: skip
    async with running_ingest(settings[0]) as a, running_ingest(settings[1]) as b:
        ann = new_user(mesh_keys)
        wide = pb.UpsertRequest(collection="notes", points=[point(i) for i in range(4)])
        await create(a, ann, "notes")
        assert (await b.stub.Upsert(wide, metadata=ann.metadata)).points_upserted == 4
        await a.stub.DeleteCollection(pb.DeleteCollectionRequest(name="notes"), metadata=ann.metadata)
        code, details = await code_of(b.stub.Upsert(wide, metadata=ann.metadata))
        assert code == grpc.StatusCode.NOT_FOUND and "notes" in details

        await create(a, ann, "notes")
        assert (await b.stub.Upsert(wide, metadata=ann.metadata)).points_upserted == 4
        await a.stub.DeleteCollection(pb.DeleteCollectionRequest(name="notes"), metadata=ann.metadata)
        await a.stub.CreateCollection(
            pb.CreateCollectionRequest(name="notes", vector_size=DIM // 2, distance=pb.DISTANCE_COSINE),
            metadata=ann.metadata,
        )
        code, details = await code_of(b.stub.Upsert(wide, metadata=ann.metadata))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and f"takes {DIM // 2}" in details
        narrow = pb.UpsertRequest(collection="notes", points=[point(9, DIM // 2)])
        assert (await b.stub.Upsert(narrow, metadata=ann.metadata)).points_upserted == 1
        assert await count(a, ann, "notes") == 1  # the new collection holds only what fits it
