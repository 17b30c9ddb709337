"""Cursor pages over sorted lists: the token is the last key of the page before (opaque to clients)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from services.runtime.errors import InvalidArgument

T = TypeVar("T")
K = TypeVar("K", str, tuple[float, str])

_MAX_PAGE = 200


@dataclass(frozen=True)
class Page(Generic[T]):
    """Items of one page and the token of the next ("" at the end)."""

    items: list[T]
    next_token: str


def encode(key: str) -> str:
    """A page token for the cursor ``key``."""
    return base64.urlsafe_b64encode(f"v1:{key}".encode()).decode().rstrip("=")


def decode(token: str) -> str:
    """The cursor in ``token``, or InvalidArgument naming `page.page_token`."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidArgument("page.page_token", "not a page token issued by this service") from None
    if not raw.startswith("v1:"):
        raise InvalidArgument("page.page_token", "not a page token issued by this service")
    return raw[3:]


def page_after(items: Sequence[T], key: Callable[[T], str], size: int, token: str) -> Page[T]:
    """The page of ``items`` (sorted by ``key``) after the token's cursor."""
    size = max(1, min(size, _MAX_PAGE))
    start = 0
    if token:
        cursor = decode(token)
        start = next((i for i, item in enumerate(items) if key(item) > cursor), len(items))
    chosen = list(items[start : start + size])
    more = start + size < len(items)
    return Page(chosen, encode(key(chosen[-1])) if more and chosen else "")
