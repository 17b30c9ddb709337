""" "Processed" from the worker's own commits (services/forms/commits.py): announced once, nothing left held.

One worker runs every required consumer: the last to commit a submission announces it
from the book, the others hold their acknowledgements until then. With a second worker
alive, neither holds: each reads the status rows back, as any consumer in a group must.
"""

from __future__ import annotations

import asyncio

import nats

from chatmesh.forms.v1 import forms_pb2 as fpb
from services.forms.streams import FORMS_STREAM, processed_subject
from tests.conftest_forms import FormsEnv, wait_for
from tests.services.forms.helpers import field, submit_request, text

FIELDS = [field("name", fpb.FIELD_TYPE_TEXT, required=True)]


async def _announcements(env: FormsEnv, submission_ids: list[str]) -> dict[str, int]:
    """How many ``forms.processed`` messages FORMS holds for each submission."""
    nc = await nats.connect(env.settings.nats.url)
    try:
        info = await nc.jetstream().stream_info(FORMS_STREAM, subjects_filter="forms.processed.>")
        subjects = info.state.subjects or {}
        return {sid: subjects.get(processed_subject(sid), 0) for sid in submission_ids}
    finally:
        await nc.close()


async def _settled(env: FormsEnv) -> fpb.ConsumerStatsResponse:
    owner = env.user()
    return await wait_for(  # type: ignore[no-any-return]
        lambda: env.stub.ConsumerStats(fpb.ConsumerStatsRequest(), metadata=owner.auth),
        lambda r: all(c.pending == 0 and c.ack_pending == 0 for c in r.consumers),
        30,
    )


async def _submit(env: FormsEnv, count: int) -> list[str]:
    owner = env.user()
    form = await env.form(owner, FIELDS)
    replies = await asyncio.gather(
        *(env.stub.Submit(submit_request(form.form_id, name=text(f"n{i}")), metadata=owner.auth) for i in range(count))
    )
    return [r.submission_id for r in replies]


async def test_one_worker_announces_each_submission_once_and_releases_every_held_acknowledgement(
    forms_env: FormsEnv,
) -> None:
    (worker,) = forms_env.workers
    assert worker.book is not None and worker.book.alone()
    ids = await _submit(forms_env, 40)
    for sid in ids:
        status = await forms_env.wait_processed(sid)
        assert {c.consumer for c in status.consumers if c.state == fpb.CONSUMER_STATE_DONE} >= {
            "store",
            "sheets",
            "screen",
        }
    await _settled(forms_env)  # no delivery left unacknowledged (held ones included)
    assert worker.book.held("store") == worker.book.held("sheets") == worker.book.held("screen") == 0
    assert await _announcements(forms_env, ids) == dict.fromkeys(ids, 1)


async def test_with_a_second_worker_alive_no_worker_holds_and_every_submission_is_still_announced_once(
    forms_env: FormsEnv,
) -> None:
    second = await forms_env.add_worker()
    books = [w.book for w in (forms_env.workers[0], second) if w.book is not None]
    assert len(books) == 2
    await wait_for(lambda: asyncio.sleep(0.05), lambda _: not any(b.alone() for b in books), 10)  # heartbeats heard
    ids = await _submit(forms_env, 40)
    for sid in ids:
        await forms_env.wait_processed(sid)
    await _settled(forms_env)
    assert await _announcements(forms_env, ids) == dict.fromkeys(ids, 1)
