"""Consumers as plug-ins: dead letters and redrive, adding a consumer, backlogs made visible."""

from __future__ import annotations

import asyncio
import urllib.request
from collections import Counter
from collections.abc import Sequence
from typing import ClassVar

import grpc
import pytest

from chatmesh.forms.v1 import forms_pb2 as fpb
from services.forms.consumers.base import DONE, Consumer, ConsumerRegistry, Delivery, Failed, Outcome
from services.forms.settings import ConsumerOverride
from tests.conftest_forms import FormsEnv, wait_for
from tests.services.forms.helpers import field, submit_request, text

FIELDS = [field("name", fpb.FIELD_TYPE_TEXT, required=True)]


class Picky(Consumer):
    """Refuses submissions whose name is in ``poison``; counts what it committed."""

    name = "picky"
    description = "A test consumer that refuses poison."
    max_deliveries = 3
    backoff_s = (0.1, 0.2)
    batch_size = 10
    poison: ClassVar[set[str]] = set()
    committed: ClassVar[Counter[str]] = Counter()

    async def handle(self, batch: Sequence[Delivery]) -> Sequence[Outcome]:
        outcomes: list[Outcome] = []
        for d in batch:
            if d.submission.values["name"].string_value in self.poison:
                outcomes.append(Failed("poison pill: refused"))
            else:
                self.committed[d.submission.submission_id] += 1
                outcomes.append(DONE)
        return outcomes


class Seen(Consumer):
    """Remembers what it was given (not required)."""

    name = "seen"
    description = "A test consumer that starts at the stream's first submission."
    required = False
    ids: ClassVar[list[str]] = []

    async def handle(self, batch: Sequence[Delivery]) -> Sequence[Outcome]:
        self.ids.extend(d.submission.submission_id for d in batch)
        return [DONE] * len(batch)


class SeenFromNow(Seen):
    name = "seen-new"
    description = "A test consumer that starts with new submissions."
    start = "new"
    ids: ClassVar[list[str]] = []


class Idle(Consumer):
    """Registered, switched off: its backlog only grows."""

    name = "idle"
    description = "A test consumer that is switched off."
    required = False

    async def handle(self, batch: Sequence[Delivery]) -> Sequence[Outcome]:
        raise AssertionError("a disabled consumer is never run")


async def _status(env: FormsEnv, submission_id: str) -> fpb.SubmissionStatus:
    reply = await env.stub.GetSubmission(fpb.GetSubmissionRequest(submission_id=submission_id))
    return reply.status


def _state(status: fpb.SubmissionStatus, consumer: str) -> fpb.ConsumerStatus:
    return next(c for c in status.consumers if c.consumer == consumer)


async def _wait_consumer(env: FormsEnv, name: str) -> None:
    owner = env.user()
    await wait_for(
        lambda: env.stub.ListConsumers(fpb.ListConsumersRequest(), metadata=owner.auth),
        lambda r: name in [c.name for c in r.consumers],
        10,
    )


async def test_a_poison_submission_is_dead_lettered_redriven_once_and_holds_nobody_up(forms_env: FormsEnv) -> None:
    await forms_env.add_worker(ConsumerRegistry([Picky]))
    await _wait_consumer(forms_env, "picky")
    owner, stranger = forms_env.user(), forms_env.user()
    form = await forms_env.form(owner, FIELDS)
    Picky.poison.add("Poison Pete")
    poison = await forms_env.stub.Submit(submit_request(form.form_id, name=text("Poison Pete")), metadata=owner.auth)
    others = [
        await forms_env.stub.Submit(submit_request(form.form_id, name=text(f"Ann {i}")), metadata=owner.auth)
        for i in range(5)
    ]
    for other in others:
        await forms_env.wait_processed(other.submission_id)
    held = _state(await _status(forms_env, poison.submission_id), "picky")
    assert held.state in (fpb.CONSUMER_STATE_PENDING, fpb.CONSUMER_STATE_FAILED, fpb.CONSUMER_STATE_DEAD_LETTERED)
    dead = await wait_for(
        lambda: _status(forms_env, poison.submission_id),
        lambda s: _state(s, "picky").state == fpb.CONSUMER_STATE_DEAD_LETTERED,
        20,
    )
    assert not dead.processed
    picky = _state(dead, "picky")
    assert picky.deliveries == 3 and "poison pill: refused" in picky.last_error
    assert _state(dead, "store").state == fpb.CONSUMER_STATE_DONE

    letters = (await forms_env.stub.ListDeadLetters(fpb.ListDeadLettersRequest(), metadata=owner.auth)).dead_letters
    assert [(d.consumer, d.submission_id, d.deliveries) for d in letters] == [("picky", poison.submission_id, 3)]
    assert "poison pill" in letters[0].last_error and letters[0].form_id == form.form_id
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await forms_env.stub.ListDeadLetters(fpb.ListDeadLettersRequest(form_id=form.form_id), metadata=stranger.auth)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert not (await forms_env.stub.ListDeadLetters(fpb.ListDeadLettersRequest(), metadata=stranger.auth)).dead_letters
    ids = [letters[0].dead_letter_id]
    stolen = await forms_env.stub.Redrive(fpb.RedriveRequest(dead_letter_ids=ids), metadata=stranger.auth)
    assert stolen.redriven_count == 0
    stats = await forms_env.stub.ConsumerStats(fpb.ConsumerStatsRequest(consumer="picky"), metadata=owner.auth)
    assert stats.consumers[0].dead_lettered == 1

    Picky.poison.clear()  # the consumer is fixed
    redriven = await forms_env.stub.Redrive(fpb.RedriveRequest(dead_letter_ids=ids), metadata=owner.auth)
    assert redriven.redriven_count == 1
    status = await forms_env.wait_processed(poison.submission_id)
    assert _state(status, "picky").state == fpb.CONSUMER_STATE_DONE
    again = await forms_env.stub.Redrive(fpb.RedriveRequest(dead_letter_ids=ids), metadata=owner.auth)
    assert again.redriven_count == 0  # a retried Redrive is harmless
    await asyncio.sleep(1.0)  # time for any second delivery to show
    assert Picky.committed[poison.submission_id] == 1
    assert all(Picky.committed[o.submission_id] == 1 for o in others)
    assert _state(await _status(forms_env, poison.submission_id), "store").deliveries == 1  # only picky got it back
    assert not (await forms_env.stub.ListDeadLetters(fpb.ListDeadLettersRequest(), metadata=owner.auth)).dead_letters


async def test_a_new_consumer_gets_submissions_from_the_start_or_from_now_on(forms_env: FormsEnv) -> None:
    owner = forms_env.user()
    form = await forms_env.form(owner, FIELDS)
    before = await forms_env.stub.Submit(submit_request(form.form_id, name=text("Early")), metadata=owner.auth)
    await forms_env.wait_processed(before.submission_id)
    await forms_env.add_worker(ConsumerRegistry([Seen, SeenFromNow]))
    await _wait_consumer(forms_env, "seen-new")
    after = await forms_env.stub.Submit(submit_request(form.form_id, name=text("Late")), metadata=owner.auth)
    await wait_for(lambda: asyncio.sleep(0, Seen.ids), lambda ids: after.submission_id in ids, 10)
    await wait_for(lambda: asyncio.sleep(0, SeenFromNow.ids), lambda ids: after.submission_id in ids, 10)
    assert before.submission_id in Seen.ids
    assert before.submission_id not in SeenFromNow.ids
    status = await forms_env.wait_processed(after.submission_id)
    assert {c.consumer for c in status.consumers} >= {"store", "sheets", "screen", "confirm", "seen", "seen-new"}
    assert not _state(status, "seen").required


async def test_a_consumer_that_does_not_keep_up_shows_its_backlog_in_stats_and_metrics(forms_env: FormsEnv) -> None:
    await forms_env.add_worker(ConsumerRegistry([Idle]), consumers={"idle": ConsumerOverride(enabled=False)})
    await _wait_consumer(forms_env, "idle")
    owner = forms_env.user()
    listed = await forms_env.stub.ListConsumers(fpb.ListConsumersRequest(), metadata=owner.auth)
    idle = next(c for c in listed.consumers if c.name == "idle")
    assert not idle.enabled and not idle.required
    form = await forms_env.form(owner, FIELDS)
    replies = [
        await forms_env.stub.Submit(submit_request(form.form_id, name=text(f"n{i}")), metadata=owner.auth)
        for i in range(4)
    ]
    for reply in replies:
        await forms_env.wait_processed(reply.submission_id)  # the idle consumer is not required
    stats = await wait_for(
        lambda: forms_env.stub.ConsumerStats(fpb.ConsumerStatsRequest(), metadata=owner.auth),
        lambda r: next(c for c in r.consumers if c.consumer == "store").processed_per_minute > 0,
        15,
    )
    by_name = {c.consumer: c for c in stats.consumers}
    assert by_name["idle"].pending >= 4 and by_name["idle"].oldest_unprocessed_age_ms > 0
    assert by_name["store"].pending == 0 and by_name["store"].ack_pending == 0
    assert by_name["store"].oldest_unprocessed_age_ms == 0 and by_name["store"].delivered >= 4
    assert by_name["store"].required and by_name["store"].HasField("last_active_at")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await forms_env.stub.ConsumerStats(fpb.ConsumerStatsRequest(consumer="nope"), metadata=owner.auth)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and (err.value.details() or "").startswith("consumer:")
    port = forms_env.service.metrics.serve("127.0.0.1", 0)
    text_ = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode())
    pending = [
        line for line in text_.splitlines() if line.startswith('chatmesh_forms_consumer_pending{consumer="idle"}')
    ]
    assert pending and float(pending[0].split()[-1]) >= 4
    assert 'chatmesh_forms_consumer_oldest_unprocessed_age_seconds{consumer="idle"}' in text_
    assert 'chatmesh_forms_consumer_processed_per_minute{consumer="store"}' in text_


async def test_abusive_text_is_flagged_on_the_stored_submission_and_clean_text_is_not(forms_env: FormsEnv) -> None:
    owner = forms_env.user()
    form = await forms_env.form(
        owner, [*FIELDS, field("note", fpb.FIELD_TYPE_LONG_TEXT), field("mail", fpb.FIELD_TYPE_EMAIL)]
    )
    rude = await forms_env.stub.Submit(
        submit_request(
            form.form_id, name=text("Ann"), note=text("this is sh1t, you f*cking idiot"), mail=text("shit@example.org")
        ),  # fmt: skip
        metadata=owner.auth,
    )
    polite = await forms_env.stub.Submit(
        submit_request(form.form_id, name=text("Scunthorpe"), note=text("Thanks for the classic assignment!")),
        metadata=owner.auth,
    )
    for reply in (rude, polite):
        await forms_env.wait_processed(reply.submission_id)
    page = await forms_env.stub.ListSubmissions(fpb.ListSubmissionsRequest(form_id=form.form_id), metadata=owner.auth)
    by_id = {s.submission_id: s for s in page.submissions}
    assert by_id[rude.submission_id].screening.flagged
    assert list(by_id[rude.submission_id].screening.flagged_keys) == ["note"]  # emails are not prose
    assert by_id[polite.submission_id].HasField("screening") and not by_id[polite.submission_id].screening.flagged
