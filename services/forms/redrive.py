"""Dead letters as their owners see them: listing the dead letters of one's forms, and sending them back.

Only dead letters of forms the caller owns are listed or redriven; ids naming anything
else (redriven already, unknown, someone else's) are skipped, so a retried Redrive is
harmless. No gRPC here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from services.forms.deadletters import DeadLetter, DeadLetters
from services.forms.definitions import FormDefinitions
from services.forms.directory import ConsumerDirectory
from services.forms.errors import BadPageToken, ConsumerNotFound
from services.forms.store import FormStore

DEFAULT_PAGE = 50
MAX_OWNED_FORMS = 10_000
#: A page token is a dead-letter id: ASCII digits, at most 20 (int() of 5,000 digits raises).
_PAGE_TOKEN = re.compile(r"[0-9]{1,20}")


class DeadLetterDesk:
    """ListDeadLetters and Redrive for form owners."""

    def __init__(
        self, letters: DeadLetters, definitions: FormDefinitions, store: FormStore, directory: ConsumerDirectory
    ) -> None:
        self._letters = letters
        self._definitions = definitions
        self._store = store
        self._directory = directory

    async def _check_consumer(self, field: str, name: str) -> None:
        if name and name not in {e.name for e in await self._directory.entries()}:
            raise ConsumerNotFound(field, name)

    async def _owned_forms(self, owner: str) -> set[str]:
        return {f.form_id for f in await self._store.forms_of(owner, MAX_OWNED_FORMS, None)}

    async def list(
        self, owner: str, consumer: str, form_id: str, page_size: int, token: str
    ) -> tuple[list[DeadLetter], str]:
        """The owner's dead letters, newest first, after ``token`` (a dead-letter id)."""
        await self._check_consumer("consumer", consumer)
        if form_id:
            await self._definitions.owned(owner, form_id)
            forms = {form_id}
        else:
            forms = await self._owned_forms(owner)
        before = None
        if token:
            if not _PAGE_TOKEN.fullmatch(token):  # ASCII digits only: str.isdigit() takes "²" and "١"
                raise BadPageToken()
            before = int(token)
        letters = await self._letters.list(consumer, forms, form_id)
        if before is not None:
            letters = [d for d in letters if int(d.dead_letter_id) < before]
        size = page_size or DEFAULT_PAGE
        page = letters[:size]
        return page, (page[-1].dead_letter_id if len(letters) > size else "")

    async def redrive(self, owner: str, ids: Sequence[str], all_for_consumer: str) -> int:
        """Send the owner's named dead letters (or all of one consumer's) back; return how many went."""
        forms = await self._owned_forms(owner)
        if all_for_consumer:
            await self._check_consumer("all_for_consumer", all_for_consumer)
            letters = await self._letters.list(all_for_consumer, forms)
        else:
            letters = []
            for dead_letter_id in ids:
                letter = await self._letters.get(dead_letter_id)
                if letter is not None and letter.submission.form_id in forms:
                    letters.append(letter)
        known = {e.name for e in await self._directory.entries()}
        return await self._letters.redrive([d for d in letters if d.consumer in known])
