"""Canonical UUID text: one spelling per id, so that an id in upper case (or another UUID form)
is the same user, device or conversation as its canonical form, everywhere.

The canonical form is what :func:`str` of :class:`uuid.UUID` gives: lower-case hex in the
8-4-4-4-12 groups. Accepted as the same id: upper or mixed case, no hyphens, braces, and the
``urn:uuid:`` prefix, ASCII hex only (``uuid.UUID`` alone would take non-ASCII digits).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from services.runtime.errors import InvalidArgument

_FORMS = re.compile(
    r"(?:urn:uuid:)?(\{)?([0-9a-f]{8})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{12})(?(1)\})",
    re.IGNORECASE | re.ASCII,
)


def canonical_uuid_or_none(value: str) -> str | None:
    """The canonical text of ``value``, or None if it is not a UUID."""
    if len(value) > 45:
        return None
    match = _FORMS.fullmatch(value)
    if match is None:
        return None
    return "-".join(match.group(i) for i in range(2, 7)).lower()


def canonical_uuid(field: str, value: str) -> str:
    """The canonical text of ``value``; InvalidArgument naming ``field`` if it is not a UUID."""
    canonical = canonical_uuid_or_none(value)
    if canonical is None:
        raise InvalidArgument(field, "must be a UUID")
    return canonical


def canonical_uuids(field: str, values: Iterable[str]) -> list[str]:
    """Each of ``values`` canonical, duplicates (after canonicalization) dropped, order kept."""
    return list(dict.fromkeys(canonical_uuid(field, v) for v in values))
