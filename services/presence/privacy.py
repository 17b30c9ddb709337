"""Who may see whose presence: contacts only, and last seen only if its owner shows it.

- **Contacts**: a user's presence (state, devices, last seen) is shown to the user and to
  users sharing a conversation with them, as history's FilterContacts says (asked with the
  viewer's token, so history answers for the viewer alone). Everyone else sees what a user
  who never came online looks like: :func:`unknown`. Answers are cached per (viewer,
  subject) for ``contacts_cache_s``: a new conversation shows presence within that time.
- **Hidden last seen**: a user may hide ``last_seen_at`` from everyone else (UpdatePrivacy);
  stored in CQL ``presence_privacy`` and cached per replica for ``privacy_cache_s`` (the
  time another replica takes to see a change).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

from services.presence.folder import Presence, PresenceState
from services.runtime.cql import CqlSession
from services.runtime.errors import Unavailable

SCHEMA = ("CREATE TABLE IF NOT EXISTS presence_privacy (user_id uuid PRIMARY KEY, hide_last_seen boolean)",)


def unknown(user_id: str) -> Presence:
    """What a user who never came online looks like (and what non-contacts see of anyone)."""
    return Presence(user_id, PresenceState.UNSPECIFIED, None, 0)


class ContactsPort(Protocol):
    """Which users share a conversation with the viewer."""

    async def contacts(self, user_ids: Sequence[str], credentials: str) -> list[str]:
        """Those of ``user_ids`` who are the credentials' owner's contacts."""
        ...


class _Ttl:
    """A bounded map whose entries expire."""

    def __init__(self, ttl_s: float, max_entries: int) -> None:
        self._ttl_s = ttl_s
        self._max = max_entries
        self._items: OrderedDict[object, tuple[float, object]] = OrderedDict()

    def get(self, key: object, now: float) -> object | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= now:
            del self._items[key]
            return None
        return item[1]

    def put(self, key: object, value: object, now: float) -> None:
        if self._ttl_s <= 0:
            return
        self._items[key] = (now + self._ttl_s, value)
        self._items.move_to_end(key)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def drop(self, key: object) -> None:
        self._items.pop(key, None)


class PrivacyStore:
    """The ``presence_privacy`` table."""

    def __init__(self, cql: CqlSession) -> None:
        self._cql = cql

    async def hides_last_seen(self, user_id: str) -> bool:
        """The user's setting (False if never set)."""
        try:
            rows = await self._cql.execute(
                "SELECT hide_last_seen FROM presence_privacy WHERE user_id = ?", (uuid.UUID(user_id),), prepare=True
            )
        except Exception as exc:  # driver timeouts and unavailability
            raise Unavailable("privacy settings unavailable; retry") from exc
        return bool(rows and rows[0]["hide_last_seen"])

    async def set_hide_last_seen(self, user_id: str, hide: bool) -> None:
        """Store the user's setting."""
        try:
            await self._cql.execute(
                "INSERT INTO presence_privacy (user_id, hide_last_seen) VALUES (?, ?)",
                (uuid.UUID(user_id), hide),
                prepare=True,
            )
        except Exception as exc:
            raise Unavailable("privacy settings not saved; retry") from exc


@dataclasses.dataclass(frozen=True)
class PrivacyCacheSettings:
    """How long answers are reused."""

    contacts_cache_s: float
    privacy_cache_s: float
    max_entries: int


class PresencePrivacy:
    """Applies the rules to presences on their way out."""

    def __init__(self, contacts: ContactsPort, store: PrivacyStore, settings: PrivacyCacheSettings) -> None:
        self._contacts = contacts
        self._store = store
        self._contact_cache = _Ttl(settings.contacts_cache_s, settings.max_entries)
        self._hidden_cache = _Ttl(settings.privacy_cache_s, settings.max_entries)

    async def visible(self, viewer: str, user_ids: Sequence[str], credentials: str) -> set[str]:
        """Those of ``user_ids`` whose presence ``viewer`` may see: themselves and their contacts."""
        now = time.monotonic()
        shown = {viewer} & set(user_ids)
        ask: list[str] = []
        for user_id in user_ids:
            if user_id == viewer:
                continue
            cached = self._contact_cache.get((viewer, user_id), now)
            if cached is None:
                ask.append(user_id)
            elif cached:
                shown.add(user_id)
        if ask:
            found = set(await self._contacts.contacts(ask, credentials))
            for user_id in ask:
                self._contact_cache.put((viewer, user_id), user_id in found, now)
            shown |= found & set(ask)
        return shown

    async def hides_last_seen(self, user_id: str) -> bool:
        """The user's setting, cached briefly."""
        now = time.monotonic()
        cached = self._hidden_cache.get(user_id, now)
        if cached is None:
            cached = await self._store.hides_last_seen(user_id)
            self._hidden_cache.put(user_id, cached, now)
        return bool(cached)

    async def set_hide_last_seen(self, user_id: str, hide: bool) -> None:
        """Store the user's setting (this replica applies it at once)."""
        await self._store.set_hide_last_seen(user_id, hide)
        self._hidden_cache.put(user_id, hide, time.monotonic())

    async def shown(self, viewer: str | None, presence: Presence) -> Presence:
        """``presence`` as ``viewer`` (None: anyone, as on the bus) may see it, last seen hidden if asked."""
        if presence.user_id == viewer or presence.last_seen_at is None:
            return presence
        if await self.hides_last_seen(presence.user_id):
            return dataclasses.replace(presence, last_seen_at=None)
        return presence
