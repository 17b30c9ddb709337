"""Pure domain logic of ingest, no servers: passages, progress counting, page tokens, file plans."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from services.ingest import progress
from services.ingest.chunking import split_passages
from services.ingest.pages import page_after
from services.ingest.records import JobRecord, SourceRecord
from services.ingest.sources import ItemPlan, plan_jsonl, read_jsonl
from services.runtime.errors import InvalidArgument


def test_passages_stay_under_the_limit_cut_at_boundaries_and_overlap() -> None:
    paragraphs = [f"Paragraph {i}. " + "word " * 60 for i in range(6)]
    passages = split_passages("\n\n".join(paragraphs), 400, 40)
    assert len(passages) >= 6
    assert all(len(p) <= 400 for p in passages)
    assert passages[0].startswith("Paragraph 0.")
    for before, after in zip(passages, passages[1:], strict=False):
        assert after.split()[0] in before  # each passage starts with words the one before ended with
    assert split_passages("short text", 400, 40) == ["short text"]
    assert split_passages("   ", 400, 40) == []
    assert all(len(p) <= 100 for p in split_passages("x" * 1000, 100, 10))  # no boundary at all: hard cuts


def job(items: int = 2) -> JobRecord:
    now = time.time()
    record = JobRecord(
        job_id="j", owner="o", collection="c", store_name="s", vector_size=2, batch_size=10, parallelism=2,
        source=SourceRecord(kind="path", path="a.jsonl", format="jsonl"), created_at=now, updated_at=now,
    )  # fmt: skip
    progress.planned(record, items, items * 20, items * 2, now)
    return record


def test_a_batch_is_counted_once_even_when_its_item_is_redelivered() -> None:
    record = job()
    assert progress.record_batch(record, 0, 0, 10, [], 1.0, 100)
    assert not progress.record_batch(record, 0, 0, 10, [], 2.0, 100)  # the same batch again
    assert progress.record_batch(record, 0, 1, 9, [(20, "line 20: not JSON")], 3.0, 100)
    assert (record.points_done, record.points_failed, record.batches_done) == (19, 1, 2)
    assert not progress.finish_item(record, 1, 4.0)  # one of two items: the job goes on
    assert record.state == "running"
    assert progress.finish_item(record, 0, 5.0)
    assert record.state == "completed_with_errors"
    assert not progress.record_batch(record, 0, 1, 9, [], 6.0, 100)  # a finished item counts nothing


def test_a_job_where_nothing_could_be_ingested_fails_naming_the_first_reason() -> None:
    record = job(items=1)
    progress.record_batch(record, 0, 0, 0, [(1, "line 1: not JSON")], 1.0, 100)
    progress.finish_item(record, 0, 2.0)
    assert record.state == "failed" and "line 1: not JSON" in record.error


def test_the_rate_and_eta_come_from_the_last_seconds() -> None:
    record = job(items=10)
    for second in range(5):
        progress.record_batch(record, 0, second, 10, [], 100.0 + second, 100)
    per_s, eta = progress.rate(record, 104.0)
    assert per_s == pytest.approx(10.0)
    assert eta == pytest.approx((200 - 50) / 10.0)


def test_page_tokens_continue_after_the_last_item_and_bad_ones_are_refused() -> None:
    names = [f"n{i:02d}" for i in range(7)]
    first = page_after(names, str, 3, "")
    second = page_after(names, str, 3, first.next_token)
    third = page_after(names, str, 3, second.next_token)
    assert first.items + second.items + third.items == names
    assert third.next_token == ""
    with pytest.raises(InvalidArgument, match="page.page_token"):
        page_after(names, str, 3, "not-a-token!")


def test_a_jsonl_file_is_cut_into_items_of_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    lines = [json.dumps({"vector": [i, 1]}) for i in range(25)]
    path.write_text("\n".join(lines[:10]) + "\n\n" + "\n".join(lines[10:]) + "\n")
    plan = plan_jsonl(path, 10)
    assert plan.points == 25 and [i.count for i in plan.items] == [10, 10, 5]
    read = [p for item in plan.items for p in read_jsonl(path, item, "file:p.jsonl")]
    assert [p.point.vector[0] for p in read if p.point] == list(range(25))
    assert read[10].position == 12  # the blank line 11 is skipped, positions are file lines
    again = read_jsonl(
        path, ItemPlan(1, plan.items[1].first_position, 10, plan.items[1].start, plan.items[1].end), "file:p.jsonl"
    )
    assert [p.point.id for p in again if p.point] == [p.point.id for p in read[10:20] if p.point]  # same ids on a retry
