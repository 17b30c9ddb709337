"""Splitting text into passages small enough to embed, at natural boundaries.

A passage is at most ``max_chars`` characters. Text is cut at paragraph breaks first, then
at sentence ends, then at spaces, and only as a last resort inside a word; consecutive
passages share up to ``overlap_chars`` characters (whole words), so a sentence cut at a
passage boundary is still found by a query about it.
"""

from __future__ import annotations

import re

_PARAGRAPHS = re.compile(r"\n\s*\n")
_SENTENCES = re.compile(r"(?<=[.!?;:])\s+")
_SPACES = re.compile(r"\s+")


def _pieces(text: str, max_chars: int) -> list[str]:
    """``text`` cut into pieces of at most ``max_chars``, each at the coarsest boundary that fits."""
    for pattern in (_PARAGRAPHS, _SENTENCES, _SPACES):
        parts = [p.strip() for p in pattern.split(text) if p.strip()]
        if len(parts) > 1:
            out: list[str] = []
            for part in parts:
                out.extend([part] if len(part) <= max_chars else _pieces(part, max_chars))
            return out
    return [text[i : i + max_chars] for i in range(0, len(text), max_chars)]


def _tail(text: str, chars: int) -> str:
    """The last whole words of ``text`` within ``chars`` characters."""
    if chars <= 0 or len(text) <= chars:
        return "" if chars <= 0 else text
    cut = text[-chars:]
    space = cut.find(" ")
    return cut[space + 1 :] if space >= 0 else ""


def split_passages(text: str, max_chars: int, overlap_chars: int = 0) -> list[str]:
    """The passages of ``text`` in order (empty text: none).

    Args:
        text: the text, any length.
        max_chars: longest passage.
        overlap_chars: characters a passage repeats from the end of the one before; under
            half of ``max_chars``.
    """
    if overlap_chars * 2 >= max_chars:
        raise ValueError("overlap_chars must be under half of max_chars")
    stripped = text.strip()
    if not stripped:
        return []
    if len(stripped) <= max_chars:
        return [stripped]
    budget = max_chars - overlap_chars
    passages: list[str] = []
    current = ""
    for piece in _pieces(stripped, budget):
        joiner = "\n\n" if "\n" in stripped else " "
        if current and len(current) + len(joiner) + len(piece) > budget:
            passages.append(current)
            current = piece
        else:
            current = f"{current}{joiner}{piece}" if current else piece
    if current:
        passages.append(current)
    if overlap_chars:
        passages = [passages[0]] + [
            (f"{tail} {p}" if (tail := _tail(passages[i - 1], overlap_chars)) else p)
            for i, p in enumerate(passages)
            if i > 0
        ]
    return passages
