"""Form definitions: create, read, list, update; each version compiled once and cached.

Submit reads the form of every call, so the latest version of each form in use is kept
in memory with its compiled checker. A change made here drops the entry at once and is
announced on core NATS (``forms_defs.changed``), so other replicas drop theirs; entries
also expire after ``cache_ttl_s`` in case an announcement was missed. A submission
records the version it was checked against. No gRPC here.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from chatmesh.forms.v1 import forms_pb2 as pb
from services.forms.errors import (
    BadPageToken,
    FormNameTaken,
    FormNotFound,
    InvalidDefinition,
    NotTheOwner,
    VersionConflict,
)
from services.forms.schema import definition_violations
from services.forms.store import FormStore
from services.forms.validation import CompiledForm, compile_form

DEFAULT_PAGE = 50


@dataclass(frozen=True)
class LiveForm:
    """A form's latest definition with its compiled checker."""

    form: pb.Form
    compiled: CompiledForm
    loaded_at: float


def _encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadPageToken() from None


class FormDefinitions:
    """The forms use cases, and the cache Submit reads forms from."""

    def __init__(
        self,
        store: FormStore,
        cache_size: int,
        cache_ttl_s: float,
        announce: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._cache_size = cache_size
        self._ttl_s = cache_ttl_s
        self._announce = announce
        self._live: OrderedDict[str, LiveForm] = OrderedDict()

    # -- the cache --------------------------------------------------------------------

    def forget(self, form_id: str) -> None:
        """Drop a cached form (it changed)."""
        self._live.pop(form_id, None)

    async def live(self, form_id: str) -> LiveForm:
        """The latest version of a form, compiled (from the cache when fresh)."""
        live = self._live.get(form_id)
        now = time.monotonic()
        if live is not None and now - live.loaded_at < self._ttl_s:
            return live
        form = await self._store.form(form_id)
        if form is None:
            raise FormNotFound(form_id)
        if live is not None and live.form.version == form.version:
            live = LiveForm(live.form, live.compiled, now)  # still current: keep the compiled checker
        else:
            live = LiveForm(form, compile_form(form.form_id, form.version, form.fields), now)
        self._live[form_id] = live
        self._live.move_to_end(form_id)
        while len(self._live) > self._cache_size:
            self._live.popitem(last=False)
        return live

    async def _changed(self, form_id: str) -> None:
        self.forget(form_id)
        if self._announce is not None:
            await self._announce(form_id)

    # -- use cases --------------------------------------------------------------------

    async def create(
        self, owner: str, name: str, title: str, description: str, fields: Sequence[pb.Field], public: bool
    ) -> pb.Form:
        """A new form of ``owner`` at version 1."""
        violations = definition_violations(fields)
        if violations:
            raise InvalidDefinition(violations)
        form_id = str(uuid.uuid4())
        claimed = await self._store.claim_name(owner, name, form_id)
        if claimed != form_id:
            raise FormNameTaken(name)
        now = datetime.now(UTC)
        form = pb.Form(
            form_id=form_id,
            name=name,
            title=title,
            description=description,
            fields=fields,
            version=1,
            owner_user_id=owner,
            public=public,
        )
        form.created_at.FromMilliseconds(int(now.timestamp() * 1000))
        form.updated_at.CopyFrom(form.created_at)
        await self._store.put_new_form(form)
        return form

    async def get(self, form_id: str) -> pb.Form:
        """A form's latest definition (who may read it is the caller's business)."""
        return (await self.live(form_id)).form

    async def version(self, form_id: str, version: int) -> pb.Form | None:
        """One version of a form."""
        live = self._live.get(form_id)
        if live is not None and live.form.version == version:
            return live.form
        return await self._store.form_version(form_id, version)

    async def owned(self, owner: str, form_id: str) -> pb.Form:
        """The form, if ``owner`` owns it (NOT_FOUND, PERMISSION_DENIED)."""
        form = await self.get(form_id)
        if form.owner_user_id != owner:
            raise NotTheOwner()
        return form

    async def list(self, owner: str, page_size: int, token: str) -> tuple[list[pb.Form], str]:
        """The owner's forms, newest first, and the next page's token."""
        size = page_size or DEFAULT_PAGE
        after = None
        if token:
            parts = _decode(token).split("|")
            if len(parts) != 3 or parts[0] != "f1":
                raise BadPageToken()
            try:
                after = (datetime.fromtimestamp(int(parts[1]) / 1000, UTC), str(uuid.UUID(parts[2])))
            except ValueError:
                raise BadPageToken() from None
        forms = await self._store.forms_of(owner, size + 1, after)
        page, more = forms[:size], len(forms) > size
        next_token = ""
        if more:
            last = page[-1]
            next_token = _encode(f"f1|{last.created_at.ToMilliseconds()}|{last.form_id}")
        return page, next_token

    async def update(
        self,
        owner: str,
        form_id: str,
        expected_version: int,
        title: str,
        description: str,
        fields: Sequence[pb.Field],
        public: bool,
    ) -> pb.Form:
        """The form at its next version, if ``expected_version`` is still its version."""
        current = await self._store.form(form_id)
        if current is None:
            raise FormNotFound(form_id)
        if current.owner_user_id != owner:
            raise NotTheOwner()
        if current.version != expected_version:
            raise VersionConflict(expected_version, current.version)
        violations = definition_violations(fields)
        if violations:
            raise InvalidDefinition(violations)
        form = pb.Form()
        form.CopyFrom(current)
        form.title, form.description, form.public = title, description, public
        del form.fields[:]
        form.fields.extend(fields)
        form.version = current.version + 1
        form.updated_at.FromMilliseconds(int(time.time() * 1000))
        stored = await self._store.update_form(form, expected_version)
        if stored is not None:
            raise VersionConflict(expected_version, stored)
        await self._changed(form_id)
        return form
