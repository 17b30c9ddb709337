"""Token bytes -> the text chunks a client sees: whole UTF-8 characters, stop strings held back.

A token may end in the middle of a multi-byte character, and the text may be the start of
a stop string that the next token completes; such text waits for a later chunk. The
concatenation of every chunk is exactly the completion.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence


class CompletionText:
    """Assembles a completion token by token and says what is safe to show."""

    def __init__(self, stop: Sequence[str]) -> None:
        self._stop = tuple(stop)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._text = ""
        self._shown = 0
        self.stop_string = ""

    @property
    def text(self) -> str:
        """The completion shown so far (a matched stop string and what follows it excluded)."""
        return self._text[: self._shown]

    def add(self, piece: bytes) -> str:
        """Add one token's bytes; return the newly showable text (maybe empty).

        After a stop string matched (``stop_string`` set), the completion is over.
        """
        self._text += self._decoder.decode(piece)
        search_from = max(0, self._shown - max((len(s) for s in self._stop), default=0))
        first: tuple[int, str] | None = None
        for stop in self._stop:
            at = self._text.find(stop, search_from)
            if at >= 0 and (first is None or at < first[0]):
                first = (at, stop)
        if first is not None:
            self.stop_string = first[1]
            self._text = self._text[: first[0]]
            return self._show(len(self._text))
        return self._show(len(self._text) - self._held_back())

    def flush(self) -> str:
        """The rest of the text (the generation ended without a stop string)."""
        self._text += self._decoder.decode(b"", final=True)
        return self._show(len(self._text))

    def _held_back(self) -> int:
        """Length of the longest tail of the text that a stop string starts with."""
        longest = 0
        for stop in self._stop:
            for n in range(min(len(stop) - 1, len(self._text)), longest, -1):
                if self._text.endswith(stop[:n]):
                    longest = n
                    break
        return longest

    def _show(self, upto: int) -> str:
        upto = max(upto, self._shown)
        chunk = self._text[self._shown : upto]
        self._shown = upto
        return chunk
