"""Prompt text -> token ids, piece by piece, each piece tokenized once.

llama.cpp tokenizes a text in two steps: it first cuts the text at every special token
(``<|im_start|>``, ``<|im_end|>``...), then tokenizes each run of plain text between them on
its own. A prompt cut just before a special token therefore tokenizes, piece by piece, to
exactly the ids of the whole, provided that no special token spans the cut and that the
special token does not strip the whitespace on its left (``lstrip``). A chat prompt is
such pieces, one or two a message (``<|im_start|>user\\nHi``, ``<|im_end|>\\n``); each turn
adds a few and repeats the rest. Pieces are cached by their exact text (least recently used
dropped past a character budget), so a turn tokenizes only its new pieces, and an edited
message, being a new text, is tokenized anew: nothing stale can be served.

Thread-safe: worker threads and ``asyncio.to_thread`` calls share one cache.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

#: ``(text, add_bos) -> ids``: llama.cpp's tokenizer with special tokens parsed.
TokenizeFn = Callable[[str, bool], list[int]]


@dataclass(frozen=True)
class SpecialToken:
    """A token llama.cpp cuts the text at before tokenizing (control, user-defined or unknown)."""

    text: str
    lstrip: bool
    """It eats the whitespace on its left: a cut just before it would keep that whitespace."""


class PieceTokenizer:
    """Tokenizes prompts piece by piece (cut before special tokens), each piece cached by its text."""

    def __init__(self, tokenize: TokenizeFn, specials: Iterable[SpecialToken], budget_chars: int) -> None:
        """Build a tokenizer.

        Args:
            tokenize: the model's tokenizer (special tokens parsed).
            specials: every token the tokenizer cuts at (see :class:`SpecialToken`).
            budget_chars: most characters of piece text the cache keeps; 0 disables it.
        """
        self._tokenize = tokenize
        self._budget = budget_chars
        specials = [s for s in specials if s.text]
        # Cut before the tokens that keep their left neighbour intact; longest first, as llama.cpp matches.
        markers = sorted({s.text for s in specials if not s.lstrip}, key=len, reverse=True)
        self._cut = re.compile("|".join(re.escape(m) for m in markers)) if markers else None
        self._by_first: dict[str, tuple[SpecialToken, ...]] = {}
        for special in set(specials):
            self._by_first[special.text[0]] = (*self._by_first.get(special.text[0], ()), special)
        self._longest = max((len(s.text) for s in specials), default=0)
        self._pieces: OrderedDict[str, tuple[int, ...]] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    @property
    def cached_pieces(self) -> int:
        """Pieces held now."""
        return len(self._pieces)

    def tokenize(self, text: str, add_bos: bool) -> list[int]:
        """The ids of ``text``, the same as tokenizing it whole.

        With ``add_bos`` the text is tokenized whole: BOS (and EOS, for models that add one)
        go around the whole text, not around a piece.
        """
        if add_bos or self._cut is None:
            return self._tokenize(text, add_bos)
        ids: list[int] = []
        for piece in self.pieces(text):
            ids.extend(self.piece(piece))
        return ids

    def count(self, text: str) -> int:
        """How many tokens ``text`` is, tokenized alone (cached like a piece)."""
        return len(self.piece(text))

    def piece(self, text: str) -> tuple[int, ...]:
        """The ids of ``text`` tokenized alone without BOS, from the cache when it holds them."""
        with self._lock:
            ids = self._pieces.get(text)
            if ids is not None:
                self._pieces.move_to_end(text)
                return ids
        ids = tuple(self._tokenize(text, False))
        if len(text) > self._budget:
            return ids
        with self._lock:
            if text not in self._pieces:
                self._pieces[text] = ids
                self._chars += len(text)
                while self._chars > self._budget:
                    evicted, _ = self._pieces.popitem(last=False)
                    self._chars -= len(evicted)
        return ids

    def pieces(self, text: str) -> list[str]:
        """``text`` cut just before each special token where llama.cpp would cut it too."""
        assert self._cut is not None
        cuts = [m.start() for m in self._cut.finditer(text) if m.start() > 0 and self._cuttable(text, m.start())]
        return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]

    def _cuttable(self, text: str, at: int) -> bool:
        """False when a special token starting before ``at`` reaches past it, or one that strips on
        its left starts there: llama.cpp's pieces would then not be ours."""
        for start in range(max(0, at - self._longest + 1), at + 1):
            for special in self._by_first.get(text[start], ()):
                if not text.startswith(special.text, start):
                    continue
                if (start < at and start + len(special.text) > at) or (start == at and special.lstrip):
                    return False
        return True
