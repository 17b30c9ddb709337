"""The Python SDK's ingest, search and forms helpers against the live mesh (`mesh up`: Envoy,
ingest with its workers and the default embedding model, forms with its worker), as an app
would call them: documents in and found again with their sources, vectors beyond one batch
and a file through a job with its progress (and cancelled with its task), a form submitted
anonymously and signed in, the errors a user sees (the field named), and the README's
examples as written. One scripted FormsService of our own refuses Submit with UNAVAILABLE
to show its retries keep one idempotency key."""

from __future__ import annotations

import asyncio
import datetime
import json
import math
import random
import re
import textwrap
import uuid
from pathlib import Path
from typing import Any, TypeAlias

import grpc
import pytest

from chatmesh.client import Client, Document, IngestProgress, Point, RetryPolicy, field_errors
from chatmesh.client.forms import field_values
from chatmesh.forms.v1 import forms_pb2 as fpb
from chatmesh.forms.v1 import forms_pb2_grpc
from chatmesh.ingest.v1 import ingest_pb2 as ipb
from tests.conftest_mesh import LiveMesh

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

DOCS = [
    Document("The gateway of chatmesh is Envoy; it speaks gRPC and gRPC-web.", {"source": "gateway.md"}),
    Document("Presence folds the heartbeats of all a user's devices into one state.", {"source": "presence.md"}),
    Document("Forms fan validated submissions out to consumers on JetStream.", {"source": "forms.md"}),
]


def username() -> str:
    """A username no other test of this run has taken."""
    return f"sdk{uuid.uuid4().hex[:16]}"


async def signed_in(live_mesh: LiveMesh) -> Client:
    """A client of a fresh account (close it)."""
    client = Client(live_mesh.gateway_target, deadline_s=30)
    await client.register(username(), PASSWORD, "laptop")
    return client


# -- ingest and search -----------------------------------------------------------------------------


@pytest.mark.e2e
async def test_documents_are_ingested_into_a_new_collection_and_found_by_search_with_their_sources(
    live_mesh: LiveMesh,
) -> None:
    client = await signed_in(live_mesh)
    async with client:
        progress: list[IngestProgress] = []
        result = await client.ingest("notes", DOCS, create=True, on_progress=progress.append)
        assert (result.collection, result.points_written, result.job_ids) == ("notes", 3, ())
        assert [(p.done, p.total) for p in progress] == [(3, 3)]
        listed: ipb.ListCollectionsResponse = await client.ingest.ListCollections(ipb.ListCollectionsRequest())
        (notes,) = listed.collections
        assert notes.embedding_model and notes.vector_size > 0  # the default embedding model, its dimensions

        hits = await client.search("notes", DOCS[1].text, limit=3)
        assert hits[0].source == "presence.md"
        assert hits[0].text == DOCS[1].text and hits[0].score > 0.99
        assert isinstance(hits[0].id, str) and uuid.UUID(hits[0].id)  # derived from the text
        assert {h.source for h in hits} == {"gateway.md", "presence.md", "forms.md"}

        only = await client.search("notes", DOCS[1].text, filter={"source": "forms.md"})
        assert [(h.source, h.text) for h in only] == [("forms.md", DOCS[2].text)]

        # The same texts again, through a job this time: their ids come from the text, so they replace themselves.
        seen: list[IngestProgress] = []
        again = await client.ingest("notes", DOCS, job_threshold=0, on_progress=seen.append)
        assert again.points_written == 3 and len(again.job_ids) == 1 and again.points_failed == 0
        assert seen and seen[-1].done == 3 and seen[-1].job_id == again.job_ids[0]
        assert len(await client.search("notes", "Envoy", limit=10)) == 3


@pytest.mark.e2e
async def test_vectors_beyond_one_upsert_and_a_file_through_a_job_are_found_by_vector(
    live_mesh: LiveMesh, tmp_path: Path
) -> None:
    rng = random.Random(7)
    vectors = [[rng.uniform(-1, 1) for _ in range(8)] for _ in range(600)]
    client = await signed_in(live_mesh)
    async with client:
        progress: list[IngestProgress] = []
        points = [Point(v, {"n": i, "kind": "inline"}, id=i) for i, v in enumerate(vectors)]
        result = await client.ingest("vectors", points, create=True, on_progress=progress.append)
        assert result.points_written == 600
        assert [(p.done, p.total) for p in progress] == [(256, 600), (512, 600), (600, 600)]

        (best, *_) = await client.search("vectors", vectors[417], limit=3, with_vectors=True)
        assert (best.id, best.payload, best.score > 0.999) == (417, {"n": 417.0, "kind": "inline"}, True)
        norm = math.sqrt(sum(x * x for x in vectors[417]))  # a cosine collection keeps vectors normalised
        assert best.vector is not None and best.vector == pytest.approx([x / norm for x in vectors[417]], abs=1e-5)

        # A file of 400 more points, one of them broken: a job, its progress, the broken line reported.
        file = tmp_path / "more.jsonl"
        lines = [{"id": 1000 + i, "vector": v, "payload": {"kind": "file"}} for i, v in enumerate(vectors[:400])]
        lines[9]["vector"] = [1.0, 2.0]
        file.write_text("".join(json.dumps(line) + "\n" for line in lines))
        seen: list[IngestProgress] = []
        loaded = await client.ingest("vectors", file, on_progress=seen.append)
        assert (loaded.points_written, loaded.points_failed, len(loaded.job_ids)) == (399, 1, 1)
        assert [(f.position, "vector" in f.reason) for f in loaded.failures] == [(10, True)]
        assert seen[-1].done == 399 and seen[-1].failed == 1 and seen[-1].job_id == loaded.job_ids[0]

        hits = await client.search("vectors", vectors[3], limit=2, filter={"kind": "file"})
        assert [h.id for h in hits][0] == 1003


@pytest.mark.e2e
async def test_cancelling_the_task_that_awaits_a_file_ingest_cancels_its_job(
    live_mesh: LiveMesh, tmp_path: Path
) -> None:
    rng = random.Random(11)
    file = tmp_path / "big.jsonl"
    with file.open("w") as out:
        for i in range(20_000):
            out.write(json.dumps({"id": i, "vector": [round(rng.uniform(-1, 1), 4) for _ in range(8)]}) + "\n")
    client = await signed_in(live_mesh)
    async with client:
        started = asyncio.Event()
        task = asyncio.create_task(
            client.ingest("big", file, create=True, vector_size=8, on_progress=lambda p: started.set())
        )
        async with asyncio.timeout(60):
            await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        jobs: ipb.ListJobsResponse = await client.ingest.ListJobs(ipb.ListJobsRequest(collection="big"))
    (job,) = jobs.jobs
    assert job.progress.state == ipb.JOB_STATE_CANCELLED
    assert job.progress.points_done < 20_000


@pytest.mark.e2e
async def test_bad_points_and_queries_fail_with_the_field_named(live_mesh: LiveMesh) -> None:
    client = await signed_in(live_mesh)
    async with client:
        await client.create_collection("small", vector_size=4)
        with pytest.raises(grpc.aio.AioRpcError) as wrong_length:
            await client.ingest("small", [Point([0.1, 0.2, 0.3, 0.4], id=1), Point([0.5, 0.6], id=2)])
        assert wrong_length.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "points[1].vector" in (wrong_length.value.details() or "")

        with pytest.raises(grpc.aio.AioRpcError) as bad_query:
            await client.search("small", [1.0, 2.0])
        assert bad_query.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_errors(bad_query.value).keys() == {"vector"}

        with pytest.raises(grpc.aio.AioRpcError) as text_on_vectors:
            await client.search("small", "a text, on a collection of vectors only")
        assert text_on_vectors.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await client.search("nowhere", [1.0, 2.0, 3.0, 4.0])
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND

        with pytest.raises(ValueError, match="mixed"):
            await client.ingest("small", ["a text", Point([0.1, 0.2, 0.3, 0.4])])


# -- forms -----------------------------------------------------------------------------------------

FIELDS = [
    fpb.Field(key="name", label="Name", type=fpb.FIELD_TYPE_TEXT, required=True),
    fpb.Field(key="email", label="Email", type=fpb.FIELD_TYPE_EMAIL, required=True),
    fpb.Field(
        key="guests", label="Guests", type=fpb.FIELD_TYPE_INTEGER, limits=fpb.FieldLimits(min_value=1, max_value=8)
    ),
    fpb.Field(
        key="diet",
        label="Diet",
        type=fpb.FIELD_TYPE_CHOICE,
        multiple=True,
        limits=fpb.FieldLimits(choices=["vegan", "vegetarian", "none"]),
    ),
]


@pytest.mark.e2e
async def test_a_public_form_takes_anonymous_and_signed_in_submissions_that_its_owner_lists(
    live_mesh: LiveMesh,
) -> None:
    owner = await signed_in(live_mesh)
    async with owner, Client(live_mesh.gateway_target) as visitor:
        form = await owner.create_form("party", "Party", FIELDS, public=True)
        assert visitor.account is None  # never registered nor logged in

        key = str(uuid.uuid4())
        values = {"name": " Ann ", "email": "ann@EXAMPLE.com", "guests": 2, "diet": ["vegan"]}
        anonymous = await visitor.submit_form(form.form_id, values, idempotency_key=key)
        retried = await visitor.submit_form(form.form_id, values, idempotency_key=key)
        assert (retried.submission_id, retried.duplicate, anonymous.duplicate) == (anonymous.submission_id, True, False)
        signed = await owner.submit_form(form.form_id, {"name": "Owner", "email": "me@example.org"})
        assert signed.submission_id != anonymous.submission_id and signed.form_version == 1

        async with asyncio.timeout(60):
            while True:
                page: fpb.ListSubmissionsResponse = await owner.forms.ListSubmissions(
                    fpb.ListSubmissionsRequest(form_id=form.form_id)
                )
                if len(page.submissions) == 2:
                    break
                await asyncio.sleep(0.5)
        by_id = {s.submission_id: s for s in page.submissions}
        first = by_id[anonymous.submission_id]
        assert first.submitter_user_id == ""
        assert (first.values["name"].string_value, first.values["email"].string_value) == ("Ann", "ann@example.com")
        assert (first.values["guests"].integer_value, list(first.values["diet"].choices.values)) == (2, ["vegan"])
        assert owner.account is not None and by_id[signed.submission_id].submitter_user_id == owner.account.user_id


@pytest.mark.e2e
async def test_a_bad_value_names_its_field_and_a_private_form_needs_an_account(live_mesh: LiveMesh) -> None:
    owner = await signed_in(live_mesh)
    async with owner, Client(live_mesh.gateway_target) as visitor:
        public = await owner.create_form("signup", "Sign up", FIELDS, public=True)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await visitor.submit_form(public.form_id, {"name": "Ann", "email": "not an address", "guests": 99})
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # The message names one broken value (the service takes them in the order of the request's map) ...
        named = (refused.value.details() or "").split(": ", 1)[0]
        assert named in ('values["email"]', 'values["guests"]')
        # ... and the details list them all.
        errors = field_errors(refused.value)
        assert errors == {'values["email"]': "not an email address", 'values["guests"]': "at most 8"}

        with pytest.raises(TypeError, match=r'values\["guests"\]'):
            await visitor.submit_form(public.form_id, {"name": "Ann", "email": "a@b.org", "guests": object()})  # type: ignore[dict-item]

        private = await owner.create_form("private", "Private", FIELDS[:2])
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await visitor.submit_form(private.form_id, {"name": "Ann", "email": "ann@example.com"})
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
        accepted = await owner.submit_form(private.form_id, {"name": "Ann", "email": "ann@example.com"})
        assert accepted.submission_id and not accepted.duplicate


# -- the README ------------------------------------------------------------------------------------


def readme_block(heading: str) -> str:
    """The first ```python block after ``heading`` in sdk/python/README.md."""
    readme = (ROOT / "sdk" / "python" / "README.md").read_text()
    found = re.search(r"```python\n(.*?)```", readme[readme.index(heading) :], re.DOTALL)
    assert found is not None, f"no python example under {heading!r}"
    return found.group(1)


@pytest.mark.e2e
async def test_the_readmes_ingest_and_forms_examples_run_as_written(
    live_mesh: LiveMesh, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "manual.md").write_text(
        "# Manual\n\nThe mesh starts with make up.\n\nEvery service answers health checks.\n"
    )
    monkeypatch.chdir(tmp_path)
    code = readme_block("### Documents") + readme_block("### Forms")
    namespace: dict[str, object] = {}
    source = "async def example(client, target):\n" + textwrap.indent(code, "    ")
    exec(compile(source, "README.md", "exec"), namespace)
    client = await signed_in(live_mesh)
    async with client:
        await namespace["example"](client, live_mesh.gateway_target)  # type: ignore[operator]
        listed: ipb.ListCollectionsResponse = await client.ingest.ListCollections(ipb.ListCollectionsRequest())
        forms: fpb.ListFormsResponse = await client.forms.ListForms(fpb.ListFormsRequest())
    counts = {c.name: c.points_count for c in listed.collections}
    assert counts.keys() == {"notes", "movies", "manuals"} and counts["manuals"] >= 1
    assert [f.name for f in forms.forms] == ["rsvp"]


# -- retries: against a scripted FormsService of our own -----------------------------------------


class FlakyForms(forms_pb2_grpc.FormsServiceServicer):
    """Submit refused with UNAVAILABLE twice, then accepted; records what each attempt carried."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, bool]] = []  # (idempotency_key, carried an authorization header)

    async def Submit(self, request: fpb.SubmitRequest, context: Context) -> fpb.SubmitResponse:
        authorized = any(key == "authorization" for key, _ in context.invocation_metadata() or ())
        self.attempts.append((request.idempotency_key, authorized))
        if len(self.attempts) <= 2:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "JetStream did not acknowledge; retry")
        return fpb.SubmitResponse(submission_id=str(uuid.uuid4()))


async def test_an_anonymous_submit_refused_with_unavailable_is_retried_under_one_idempotency_key() -> None:
    forms = FlakyForms()
    server = grpc.aio.server()
    forms_pb2_grpc.add_FormsServiceServicer_to_server(forms, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        fast = RetryPolicy(max_attempts=4, initial_backoff_s=0.02, max_backoff_s=0.1)
        async with Client(f"127.0.0.1:{port}", retry=fast) as anyone:
            answer = await anyone.submit_form(str(uuid.uuid4()), {"email": "carol@example.org"})
            raw = await anyone.forms.Submit(fpb.SubmitRequest(form_id=str(uuid.uuid4())))
    finally:
        await server.stop(0)
    assert answer.submission_id and raw.submission_id
    keys = [key for key, _ in forms.attempts]
    assert len(keys) == 4 and len(set(keys[:3])) == 1 and uuid.UUID(keys[0])  # three attempts, one key
    assert keys[3] and keys[3] != keys[0]  # a raw stub's Submit without a key gets one of its own
    assert not any(authorized for _, authorized in forms.attempts)  # no account: no token sent


# -- plain Python values into the contracts --------------------------------------------------------


def test_python_values_become_the_field_values_their_types_say() -> None:
    values = field_values(
        {
            "name": "Ann",
            "guests": 3,
            "share": 0.5,
            "vegan": True,
            "day": datetime.date(2027, 1, 5),
            "diet": ["vegan", "none"],
            "tags": {"b", "a"},
            "raw": fpb.FieldValue(string_value="as is"),
        }
    )
    kinds = {key: (v.WhichOneof("kind"), getattr(v, v.WhichOneof("kind") or "")) for key, v in values.items()}
    assert kinds["name"] == ("string_value", "Ann") and kinds["guests"] == ("integer_value", 3)
    assert kinds["share"] == ("number_value", 0.5) and kinds["vegan"] == ("bool_value", True)
    assert kinds["day"] == ("string_value", "2027-01-05") and kinds["raw"] == ("string_value", "as is")
    assert list(values["diet"].choices.values) == ["vegan", "none"] and list(values["tags"].choices.values) == [
        "a",
        "b",
    ]
    with pytest.raises(TypeError, match=r'values\["when"\]: .*datetime'):
        field_values({"when": datetime.datetime(2027, 1, 5, 12, 0)})
