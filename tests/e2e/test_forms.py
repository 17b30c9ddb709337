"""Forms end to end through the gateway: submit, store, sheet, confirmation, status; public forms' limits.

Real NATS, Cassandra and Envoy; the session service for accounts and device streams, the
forms service and a forms worker running every built-in consumer.
"""

from __future__ import annotations

import asyncio
import http.client
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from python_calamine import CalamineWorkbook

from chatmesh.forms.v1 import forms_pb2 as fpb
from chatmesh.forms.v1 import forms_pb2_grpc
from services.forms.settings import SheetsSettings
from services.runtime.bus import NatsSettings
from services.runtime.cql import CqlSettings
from services.runtime.objectstore import ObjectStore, S3Settings
from services.session.server import build as build_session
from services.session.settings import SessionSettings
from tests.conftest import KeyPair
from tests.conftest_forms import FormsEnv, forms_stack, wait_for
from tests.e2e.chat import register
from tests.e2e.conftest import Gateway, gateway_for
from tests.e2e.grpcweb import frame, parse_frames
from tests.services.forms.helpers import field, submit_request, text

FIELDS = [
    field("name", fpb.FIELD_TYPE_TEXT, required=True),
    field("email", fpb.FIELD_TYPE_EMAIL, required=True),
    field("guests", fpb.FIELD_TYPE_INTEGER, min_value=0, max_value=10),
    field("day", fpb.FIELD_TYPE_DATE),
    field("diet", fpb.FIELD_TYPE_CHOICE, multiple=True, choices=["vegan", "gluten-free", "none"]),
    field("note", fpb.FIELD_TYPE_LONG_TEXT),
]


@dataclass
class FormsMesh:
    """The forms stack and session behind a gateway."""

    env: FormsEnv
    gateway: Gateway
    channel: grpc.aio.Channel

    @property
    def stub(self) -> forms_pb2_grpc.FormsServiceStub:
        """FormsService through the gateway."""
        return forms_pb2_grpc.FormsServiceStub(self.channel)


@pytest.fixture(scope="module")
async def forms_mesh(
    module_cql: CqlSettings, module_keys: KeyPair, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FormsMesh]:
    """Session, forms and a forms worker on one NATS, behind Envoy."""
    home = tmp_path_factory.mktemp("forms-e2e")
    async with forms_stack(home, module_cql, module_keys, anonymous_address_burst=5) as env:
        session = await build_session(
            SessionSettings(
                port=0, cql=module_cql, nats=NatsSettings(url=env.nats.url), signing_key_file=module_keys.private,
                token_public_key_file=module_keys.public, argon2_time_cost=1, argon2_memory_kib=8192,
                shutdown_drain_s=0,
            )
        )  # fmt: skip
        async with session, gateway_for({"session": session, "forms": env.service}, home / "gw") as gw:
            async with grpc.aio.insecure_channel(gw.target) as channel:
                yield FormsMesh(env, gw, channel)


async def test_a_submission_is_stored_once_in_the_sheet_once_confirmed_and_processed_last(
    forms_mesh: FormsMesh,
) -> None:
    owner = await register(forms_mesh.channel, "owner-laptop")
    submitter = await register(forms_mesh.channel, "submitter-phone")
    await submitter.connect()
    form = (
        await forms_mesh.stub.CreateForm(
            fpb.CreateFormRequest(name="dinner", title="Dinner RSVP", fields=FIELDS), metadata=owner.auth
        )
    ).form
    values = {
        "name": text("  Zoë Ångström "),
        "email": text("zoe@Example.COM"),
        "guests": fpb.FieldValue(integer_value=2),
        "day": text("2026-12-24"),
        "diet": fpb.FieldValue(choices=fpb.ChoiceList(values=["none", "vegan"])),
        "note": text('=HYPERLINK("x")\r\nsecond line'),
    }
    reply = await forms_mesh.stub.Submit(submit_request(form.form_id, **values), metadata=submitter.auth)
    watched = [
        r.status
        async for r in forms_mesh.stub.WatchSubmission(
            fpb.WatchSubmissionRequest(submission_id=reply.submission_id, timeout_s=60), metadata=submitter.auth
        )
    ]
    for status in watched:  # never processed while a required consumer has not committed
        required = [c for c in status.consumers if c.required]
        assert required and status.processed == all(c.state == fpb.CONSUMER_STATE_DONE for c in required)
        if status.processed:
            assert status.processed_at.ToMilliseconds() == max(c.updated_at.ToMilliseconds() for c in required)
    final = watched[-1]
    assert final.processed and {c.consumer for c in final.consumers if c.required} == {"store", "sheets", "screen"}
    assert all(c.state == fpb.CONSUMER_STATE_DONE for c in final.consumers)

    _, event = await submitter.next("form_submission_processed")
    confirmation = event.form_submission_processed
    assert confirmation.submission_id == reply.submission_id and confirmation.form_id == form.form_id
    assert confirmation.processed_at == final.processed_at
    assert await submitter.quiet("form_submission_processed") == []  # once
    await submitter.disconnect()

    page = await forms_mesh.stub.ListSubmissions(fpb.ListSubmissionsRequest(form_id=form.form_id), metadata=owner.auth)
    assert [s.submission_id for s in page.submissions] == [reply.submission_id]
    stored = page.submissions[0]
    assert (
        stored.values["name"].string_value == "Zoë Ångström"
        and stored.values["email"].string_value == "zoe@example.com"
    )
    assert stored.status.processed and stored.HasField("screening") and not stored.screening.flagged

    sheets = forms_mesh.env.settings.sheets.directory / form.form_id

    def rows() -> list[list[object]]:
        path = sheets / "sheet.xlsx"
        if not path.exists():
            return []
        return CalamineWorkbook.from_filelike(io.BytesIO(path.read_bytes())).get_sheet_by_index(0).to_python()

    table = await wait_for(lambda: asyncio.to_thread(rows), lambda t: len(t) == 2, 15)
    header, row = table
    assert header == ["Submission", "Submitted at (UTC)", "Form version", "Submitter", "Name", "Email", "Guests", "Day",
                      "Diet", "Note"]  # fmt: skip
    assert row[0] == reply.submission_id and row[2] == 1 and row[3] == submitter.user_id
    assert row[4:7] == ["Zoë Ångström", "zoe@example.com", 2]
    assert str(row[7]).startswith("2026-12-24") and row[8] == "vegan, none"
    assert row[9] == '=HYPERLINK("x")\nsecond line'  # text, never a formula
    csv_text = (sheets / "sheet.csv").read_text(encoding="utf-8-sig")
    assert csv_text.count(reply.submission_id) == 1 and "'=HYPERLINK" in csv_text


def _grpc_web(port: int, source: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str, list[bytes]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        conn.request(
            "POST",
            path,
            body=frame(body),
            headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1", **headers},
        )
        response = conn.getresponse()
        data = response.read()
        head = {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()
    messages, trailers = parse_frames(data)
    status = int(trailers.get("grpc-status", head.get("grpc-status", "-1")))
    return status, trailers.get("retry-after-ms", head.get("retry-after-ms", "")), messages


async def test_a_public_form_takes_anonymous_submits_and_a_flooding_address_is_limited_alone(
    forms_mesh: FormsMesh,
) -> None:
    owner = await register(forms_mesh.channel)
    form = (
        await forms_mesh.stub.CreateForm(
            fpb.CreateFormRequest(name="open", title="Open", fields=FIELDS[:2], public=True), metadata=owner.auth
        )
    ).form
    path = "/chatmesh.forms.v1.FormsService/Submit"
    burst = forms_mesh.env.settings.anonymous_address_burst

    def submit(source: str, **headers: str) -> tuple[int, str, list[bytes]]:
        request = submit_request(form.form_id, name=text("Anon"), email=text("a@b.org"))
        return _grpc_web(forms_mesh.gateway.port, source, path, request.SerializeToString(), headers)

    flood = [await asyncio.to_thread(submit, "127.0.0.2", **{"x-chatmesh-client-address": f"10.0.0.{i}"})
             for i in range(burst + 5)]  # fmt: skip
    codes = [code for code, _, _ in flood]
    assert codes[:burst] == [0] * burst  # a forged address header changes nothing: Envoy overwrites it
    assert set(codes[burst:]) == {grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]}
    assert int(flood[-1][1]) > 0
    code, _, messages = await asyncio.to_thread(submit, "127.0.0.3")  # another address is not affected
    assert code == 0
    accepted = fpb.SubmitResponse.FromString(messages[0])
    status = await forms_mesh.env.wait_processed(accepted.submission_id)
    assert status.processed
    private = (
        await forms_mesh.stub.CreateForm(
            fpb.CreateFormRequest(name="closed", title="Closed", fields=FIELDS[:2]), metadata=owner.auth
        )
    ).form
    request = submit_request(private.form_id, name=text("Anon"), email=text("a@b.org"))
    code, _, _ = await asyncio.to_thread(
        _grpc_web, forms_mesh.gateway.port, "127.0.0.4", path, request.SerializeToString(), {}
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED.value[0]


async def test_sheets_go_to_an_s3_bucket_as_a_workbook_people_can_open(
    module_cql: CqlSettings, module_keys: KeyPair, s3: S3Settings, tmp_path: Path
) -> None:
    bucket = f"sheets-{uuid.uuid4().hex[:8]}"
    sheets = SheetsSettings(target="s3", bucket=bucket, render_interval_s=0.2, flush_interval_s=0.1)
    async with forms_stack(tmp_path, module_cql, module_keys, s3=s3, sheets=sheets) as env:
        owner = env.user()
        form = await env.form(owner, FIELDS[:3])
        replies = [
            await env.stub.Submit(
                submit_request(
                    form.form_id, name=text(f"P{i}"), email=text(f"p{i}@x.org"), guests=fpb.FieldValue(integer_value=i)
                ),  # fmt: skip
                metadata=owner.auth,
            )
            for i in range(3)
        ]
        for reply in replies:
            await env.wait_processed(reply.submission_id)
        objects = ObjectStore(s3).bucket("", bucket)

        async def table() -> list[list[object]]:
            try:
                data = await objects.get_bytes(f"sheets/{form.form_id}/sheet.xlsx")
            except Exception:  # noqa: BLE001 - not rendered yet
                return []
            return CalamineWorkbook.from_filelike(io.BytesIO(data)).get_sheet_by_index(0).to_python()

        rows = await wait_for(table, lambda t: len(t) == 4, 15)
        assert [r[0] for r in rows[1:]] == [r.submission_id for r in replies]  # in submission order
        assert [r[6] for r in rows[1:]] == [0, 1, 2]
