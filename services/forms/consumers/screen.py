"""screen: flags abusive or slang text, marking the stored submission.

The word lists are glin-profanity's (maintained, 2026; word lists of 20+ languages,
leetspeak, look-alike letters and spaced-out letters normalised, no model to load, pure
Python, typing only). The local model through inference was the other choice: it judges
context better, but costs a generation slot and tens of milliseconds per submission on
these 2 cores, which the pipeline's throughput cannot give; a word list costs
microseconds and gives the same answer every time (a test can say what is flagged).
Only text values are screened (TEXT, LONG_TEXT; emails, URLs and choices are not prose).
A check costs 0.25-0.35 ms of CPU per value here (every view of the text: as written,
normalised, leetspeak), so verdicts are remembered by text (bounded LRU): answers that
many submitters give alike ("yes", "n/a", a template's text) are checked once.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence

from glin_profanity import Filter

from chatmesh.forms.v1 import forms_pb2 as pb
from services.forms.consumers.base import DONE, Consumer, ConsumerContext, Delivery, Outcome

SCREENED_TYPES = frozenset({pb.FIELD_TYPE_TEXT, pb.FIELD_TYPE_LONG_TEXT})
VERDICT_CACHE = 50_000
"""Texts whose verdict is remembered."""


class ScreenConsumer(Consumer):
    """Marks each stored submission screened, flagged or not, with the keys of the flagged values."""

    name = "screen"
    description = "Flags abusive or slang text (glin-profanity word lists) on the stored submission."
    batch_size = 200
    parallel_batches = 1  # its work is CPU in one thread; its verdict cache is not shared between threads

    def __init__(self, context: ConsumerContext) -> None:
        super().__init__(context)
        self._filter = Filter(
            {
                "languages": list(context.settings.screen_languages),
                "detect_leetspeak": True,
                "normalize_unicode": True,
            }
        )
        self._text_keys: dict[tuple[str, int], tuple[str, ...]] = {}
        self._verdicts: OrderedDict[str, bool] = OrderedDict()

    def is_abusive(self, value: str) -> bool:
        """The word lists' verdict on one text (remembered)."""
        verdict = self._verdicts.get(value)
        if verdict is None:
            verdict = self._verdicts[value] = bool(self._filter.is_profane(value))
            if len(self._verdicts) > VERDICT_CACHE:
                self._verdicts.popitem(last=False)
        else:
            self._verdicts.move_to_end(value)
        return verdict

    async def _keys(self, submission: pb.Submission) -> tuple[str, ...]:
        cache_key = (submission.form_id, submission.form_version)
        keys = self._text_keys.get(cache_key)
        if keys is None:
            form = await self.context.definitions.version(submission.form_id, submission.form_version)
            keys = tuple(f.key for f in form.fields if f.type in SCREENED_TYPES) if form is not None else ()
            self._text_keys[cache_key] = keys
        return keys

    def flagged_keys(self, submission: pb.Submission, keys: Sequence[str]) -> list[str]:
        """Keys of the text values that look abusive."""
        values = submission.values
        return [k for k in keys if k in values and self.is_abusive(values[k].string_value)]

    async def handle(self, batch: Sequence[Delivery]) -> Sequence[Outcome]:
        work = [(d.submission, await self._keys(d.submission)) for d in batch]

        def screen() -> list[tuple[pb.Submission, bool, list[str]]]:
            verdicts = []
            for submission, keys in work:
                flagged = self.flagged_keys(submission, keys)
                verdicts.append((submission, bool(flagged), flagged))
            return verdicts

        verdicts = await asyncio.to_thread(screen)  # word matching is CPU work: off the event loop
        await self.context.store.mark_screened(verdicts)
        return [DONE] * len(batch)
