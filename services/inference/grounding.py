"""Grounded replies: the question a turn asks, the passages found for it, and where they go in the prompt.

Retrieval. The query is the latest user turn, with the user's turn before it when the
latest reads as a follow-up ("and in 1998?", "why is that?": few words, or a pronoun that
points back). Each of the conversation's collections is searched through ingest *with the
caller's token* (:class:`~services.inference.ingest_client.IngestSearch`), the hits merged
best first, and those scoring at least ``min_score`` kept, at most ``limit``. None kept:
the reply says so (:func:`nothing_found`) instead of inventing an answer.

Prompt layout, for the KV cache. The passages go into the *latest* user turn, after the
whole history, never before it: the system prompt and every earlier turn render exactly
as in the previous turn's prompt, so the conversation's saved KV state stays a valid
prefix. History stores the user's message as they wrote it, so the next turn renders this
turn without its passages: the next turn's prompt and this one's share everything up to
this turn's user text, and the next turn evaluates only this turn's question and reply
again, then its own grounded turn. The passages of earlier turns never pile up.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.inference.ingest_client import Found, IngestSearch

#: Words that point back at an earlier turn: a question holding one is a follow-up.
_BACK_REFERENCES = frozenset(
    "it its it's they them their theirs that this those these he him his she her hers there then one ones".split()
)
#: Openings of a follow-up ("and ...", "what about ...").
_FOLLOW_UP_OPENINGS = ("and ", "also ", "but ", "so ", "what about", "how about", "why", "then ")
#: A question this short only makes sense with the turn before it.
_FOLLOW_UP_MAX_WORDS = 3
_WORD = re.compile(r"[a-z']+")

INSTRUCTION = (
    "Answer the question from these passages of the user's documents only, citing each passage you use by its "
    "number, like [1]. If they do not hold the answer, say that the documents do not say."
)


@dataclass(frozen=True)
class Citation:
    """A passage a grounded reply answers from, as numbered in its prompt."""

    number: int
    collection: str
    point_id: str
    source: str
    offset: int
    score: float
    passage: str


def is_follow_up(text: str) -> bool:
    """Whether ``text`` reads as a follow-up that needs the turn before it to be understood."""
    lowered = text.strip().lower()
    words = _WORD.findall(lowered)
    if len(words) <= _FOLLOW_UP_MAX_WORDS:
        return True
    return lowered.startswith(_FOLLOW_UP_OPENINGS) or any(w in _BACK_REFERENCES for w in words)


def query_of(user_turns_newest_first: Sequence[str]) -> str:
    """The search query: the latest user turn, after the one before it when the latest is a follow-up."""
    latest = user_turns_newest_first[0]
    if len(user_turns_newest_first) > 1 and is_follow_up(latest):
        return f"{user_turns_newest_first[1]}\n{latest}"
    return latest


def source_of(payload: dict[str, Any]) -> str:
    """A passage's source from its payload: its title, else its source (a file), else its file; '' if none."""
    for key in ("title", "source", "file", "file_name"):
        value = payload.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def offset_of(payload: dict[str, Any]) -> int:
    """Where a passage sits in its source: the payload's "offset", else its "passage" number, else 0."""
    for key in ("offset", "passage"):
        value = payload.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return int(value)
    return 0


def citations_of(found: Sequence[Found], limit: int, min_score: float, chars: int) -> tuple[Citation, ...]:
    """The best ``limit`` hits of all collections that score at least ``min_score``, numbered from 1."""
    kept = sorted((f for f in found if f.score >= min_score), key=lambda f: -f.score)[:limit]
    return tuple(
        Citation(
            number=i + 1,
            collection=f.collection,
            point_id=f.point_id,
            source=source_of(f.payload),
            offset=offset_of(f.payload),
            score=f.score,
            passage=str(f.payload.get("text", ""))[:chars],
        )
        for i, f in enumerate(kept)
    )


async def retrieve(
    search: IngestSearch,
    collections: Sequence[str],
    query: str,
    credentials: str,
    limit: int,
    min_score: float,
    chars: int,
) -> tuple[Citation, ...]:
    """Search every collection for ``query`` as the caller (at once) and keep the best passages.

    Raises:
        NotFound: naming ``collections[i]``: not a collection of the caller's.
    """
    results = await asyncio.gather(
        *(search.search(name, f"collections[{i}]", query, limit, credentials) for i, name in enumerate(collections))
    )
    return citations_of([f for hits in results for f in hits], limit, min_score, chars)


def grounded_text(question: str, citations: Sequence[Citation]) -> str:
    """The latest user turn as the model sees it: the numbered passages, then the question."""
    blocks = []
    for c in citations:
        where = f" ({c.source})" if c.source else ""
        blocks.append(f"[{c.number}]{where} {c.passage}")
    return f"{INSTRUCTION}\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question}"


def nothing_found(collections: Sequence[str]) -> str:
    """The reply when no passage is relevant enough: said plainly, nothing invented."""
    names = ", ".join(collections)
    return (
        f"I found nothing relevant to this in your documents ({names}), so I cannot answer it from them. "
        "Try asking in other words, or add a document that covers it."
    )
