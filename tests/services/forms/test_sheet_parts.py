"""The sheets consumer's parts: compacted by levels, every row in exactly one sheet row throughout.

A form lives for months and gets a part every batch; every batch lists the form's parts (to
stay exactly once across processes), so without compaction the listing grows without end.
These drive the consumer itself (``handle``, ``compact``, ``render``) on a real directory and
a real S3 API server (S3Proxy): no NATS or CQL is involved in writing parts.
"""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from chatmesh.forms.v1 import forms_pb2 as fpb
from services.forms.consumers.base import DONE, ConsumerContext, Delivery
from services.forms.consumers.sheets import SheetsConsumer, part_level
from services.forms.settings import FormsSettings, SheetsSettings
from services.forms.sheetfiles import SheetFiles
from services.forms.sheetrender import decode_part
from services.runtime.errors import NotFound
from services.runtime.objectstore import ObjectStore, S3Settings

FAN_IN = 4


class _NoDefinitions:
    """The form's definition is not needed to write rows (the sheet's columns come from the rows)."""

    async def get(self, form_id: str) -> Any:
        raise NotFound(form_id)


def _consumer(settings: FormsSettings, worker: str = "w1") -> SheetsConsumer:
    settings = settings.model_copy(update={"worker_name": worker})
    context = ConsumerContext(settings, None, _NoDefinitions(), None, ObjectStore(settings.s3))  # type: ignore[arg-type]
    return SheetsConsumer(context)


def _submissions(form_id: str, n: int) -> Iterator[fpb.Submission]:
    for i in range(n):
        sid = str(uuid.UUID(int=(i + 1) << 64 | 0x4000_8000_0000_0000_0000))
        yield fpb.Submission(
            submission_id=sid,
            form_id=form_id,
            form_version=1,
            created_at=Timestamp(seconds=1_800_000_000 + i),
            values={"name": fpb.FieldValue(string_value=f"person {i}")},
        )


def _deliveries(submissions: list[fpb.Submission]) -> list[Delivery]:
    return [Delivery(s, 1, n) for n, s in enumerate(submissions, start=1)]


async def _part_ids(files: SheetFiles, form_id: str) -> list[list[str]]:
    return [
        [r.submission_id for r in decode_part(await files.read_part(form_id, name))]
        for name in await files.list_parts(form_id)
    ]


def _csv_ids(data: bytes) -> list[str]:
    return [row[0] for row in list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))[1:]]


@pytest.fixture(params=["local", "s3"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> FormsSettings:
    """Sheets in a directory, or in a fresh bucket of the run's S3Proxy (made by the consumer's open)."""
    sheets = {"compact_fan_in": FAN_IN, "render_interval_s": 3600.0, "formats": ["csv"]}
    if request.param == "local":
        return FormsSettings(sheets=SheetsSettings(directory=tmp_path / "sheets", **sheets))
    s3: S3Settings = request.getfixturevalue("s3")
    bucket = f"parts-{uuid.uuid4().hex[:8]}"
    return FormsSettings(s3=s3, sheets=SheetsSettings(target="s3", bucket=bucket, **sheets))


def test_a_part_names_its_level() -> None:
    assert part_level("0190a1b2-0000-7000-8000-000000000001-w1-12-99.jsonl") == 0
    assert part_level("merged1-0190a1b2-0000-7000-8000-000000000001-w1-12-99.jsonl") == 1
    assert part_level("merged12-x-w1-1-2.jsonl") == 12
    assert part_level("mergedx-x.jsonl") == 0


async def test_parts_stay_few_and_every_row_is_in_the_sheet_once(settings: FormsSettings) -> None:
    form_id = str(uuid.uuid4())
    submissions = list(_submissions(form_id, 200))
    sheets = _consumer(settings)
    await sheets.open()
    try:
        most = 0
        for start in range(0, len(submissions), 2):  # 100 batches of 2 rows: 100 parts uncompacted
            assert await sheets.handle(_deliveries(submissions[start : start + 2])) == [DONE, DONE]
            await sheets.compact(form_id)
            most = max(most, len(await sheets.files.list_parts(form_id)))
        parts = await _part_ids(sheets.files, form_id)
        # 100 batches at a fan-in of 4: levels 0-3 hold under 4 parts each (100 = 1*64 + 2*16 + 1*4).
        assert most <= FAN_IN * 4
        assert len(parts) == 4
        assert sorted({i for ids in parts for i in ids}) == sorted(s.submission_id for s in submissions)
        assert sum(len(ids) for ids in parts) == len(submissions)  # no row in two parts once compacted
        await sheets.render(form_id)
        rendered = _csv_ids(await sheets.files.read_file(form_id, "sheet.csv"))
        assert rendered == sorted(s.submission_id for s in submissions)  # once each, in order
    finally:
        await sheets.close()


async def test_a_redelivery_after_compaction_adds_nothing_in_another_process(settings: FormsSettings) -> None:
    form_id = str(uuid.uuid4())
    submissions = list(_submissions(form_id, 40))
    first, second = _consumer(settings, "w1"), _consumer(settings, "w2")
    await first.open()
    await second.open()
    try:
        for start in range(0, 20, 2):
            await first.handle(_deliveries(submissions[start : start + 2]))
        await second.handle(_deliveries(submissions[20:22]))  # the second reads the first's ten parts
        listed = second.files.list_parts

        async def listing_then_compaction(form: str) -> list[str]:
            names = await listed(form)
            await first.compact(form)  # the parts just listed are merged and deleted before they are read
            return names

        second.files.list_parts = listing_then_compaction  # type: ignore[method-assign]
        for start in range(22, 30, 2):
            await first.handle(_deliveries(submissions[start : start + 2]))
        # A redelivery to the second process of rows the first committed: nothing new.
        assert await second.handle(_deliveries(submissions[22:30])) == [DONE] * 8
        second.files.list_parts = listed  # type: ignore[method-assign]
        await first.compact(form_id)
        parts = await _part_ids(first.files, form_id)
        assert len(parts) == 1  # the merged part alone: the second process wrote no part for the redelivery
        everything = [i for ids in parts for i in ids]
        assert sorted(set(everything)) == sorted(s.submission_id for s in submissions[:30])
        await second.render(form_id)
        assert _csv_ids(await second.files.read_file(form_id, "sheet.csv")) == sorted(
            s.submission_id for s in submissions[:30]
        )
    finally:
        await first.close()
        await second.close()


async def test_a_crash_between_merging_and_deleting_leaves_each_row_once(settings: FormsSettings) -> None:
    form_id = str(uuid.uuid4())
    submissions = list(_submissions(form_id, 12))
    crashing = _consumer(settings)
    await crashing.open()
    try:
        for start in range(0, 12, 3):
            await crashing.handle(_deliveries(submissions[start : start + 3]))

        async def crash(form: str, name: str) -> None:
            raise OSError("killed before the merged parts were deleted")

        crashing.files.delete_part = crash  # type: ignore[method-assign]
        with pytest.raises(OSError):
            await crashing.compact(form_id)
        assert len(await crashing.files.list_parts(form_id)) == 5  # the merged part and the four it holds
    finally:
        await crashing.close()

    restarted = _consumer(settings)  # reads every part back, as after a restart
    await restarted.open()
    try:
        assert await restarted.handle(_deliveries(submissions[:3])) == [DONE] * 3  # redelivered: already there
        await restarted.render(form_id)
        rendered = _csv_ids(await restarted.files.read_file(form_id, "sheet.csv"))
        assert rendered == sorted(s.submission_id for s in submissions)
        await restarted.compact(form_id)  # the leftovers merged in their turn
        parts = await _part_ids(restarted.files, form_id)
        assert len(parts) == 2 and sorted({i for ids in parts for i in ids}) == rendered
    finally:
        await restarted.close()


async def test_an_idle_form_leaves_memory_and_its_rows_come_back_from_the_parts(tmp_path: Path) -> None:
    settings = FormsSettings(
        sheets=SheetsSettings(directory=tmp_path / "sheets", render_interval_s=0.0, forget_idle_s=0.0, formats=["csv"])
    )
    form_id = str(uuid.uuid4())
    submissions = list(_submissions(form_id, 6))
    sheets = _consumer(settings)
    await sheets.open()
    try:
        await sheets.handle(_deliveries(submissions[:4]))
        for _ in range(100):  # the render loop renders it, then forgets it
            if form_id not in sheets._forms:
                break
            await asyncio.sleep(0.05)
        assert form_id not in sheets._forms
        assert _csv_ids(await sheets.files.read_file(form_id, "sheet.csv")) == sorted(
            s.submission_id for s in submissions[:4]
        )
        await sheets.handle(_deliveries(submissions[2:6]))  # two redelivered, two new
        await sheets.render(form_id)
        assert _csv_ids(await sheets.files.read_file(form_id, "sheet.csv")) == sorted(
            s.submission_id for s in submissions
        )
    finally:
        await sheets.close()
