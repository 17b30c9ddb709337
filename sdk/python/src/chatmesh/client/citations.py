"""Where a grounded reply's facts come from: the passages it cites, as plain Python.

A grounded reply (``Reply`` with collections) streams them once, before its first token
(``inference.v1.Citations``), and history stores them with the reply
(``history.v1.Message.citations``); both carry the same seven fields, and
:meth:`Citation.from_proto` takes either, so a live answer and a message read back later
give the same :class:`Citation`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


class _CitationMessage(Protocol):
    """``inference.v1.Citation`` or ``history.v1.Citation``: the same fields."""

    number: int
    collection: str
    point_id: str
    source: str
    offset: int
    score: float
    passage: str


@dataclass(frozen=True)
class Citation:
    """One passage a grounded reply answers from.

    Attributes:
        number: Its number in the reply's text, from 1 (the reply writes "[1]", "[2]"...).
        collection: The caller's collection it was found in.
        point_id: The point's id there (a UUID, or an unsigned integer in decimal).
        source: The payload's "title", else "source", else "file"; "" when it names none.
        offset: Where it sits in its source (the payload's "offset", else its passage
            number); 0 when unknown.
        score: Its search score (cosine similarity for a cosine collection: higher is closer).
        passage: The passage's text, at most 2,000 characters.
    """

    number: int
    collection: str
    point_id: str
    source: str
    offset: int
    score: float
    passage: str

    @classmethod
    def from_proto(cls, message: _CitationMessage) -> Citation:
        """From an ``inference.v1.Citation`` (the stream) or a ``history.v1.Citation`` (a stored message)."""
        return cls(
            number=message.number,
            collection=message.collection,
            point_id=message.point_id,
            source=message.source,
            offset=message.offset,
            score=message.score,
            passage=message.passage,
        )


def citations_of(messages: Iterable[_CitationMessage]) -> tuple[Citation, ...]:
    """The citations of a stream's ``Citations`` chunk or of a stored ``Message``, in their order."""
    return tuple(Citation.from_proto(m) for m in messages)
