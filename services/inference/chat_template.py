"""Chat messages -> prompt text, with the model's own Jinja chat template from its GGUF file.

Rendering goes through llama-cpp-python's ``Jinja2ChatFormatter`` (the sandboxed Jinja
environment it uses for GGUF templates), never a hand-written copy of a template.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from services.inference.gguf_meta import GgufFacts
from services.runtime.errors import InvalidArgument

ChatRole = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatTurn:
    """One message of a chat."""

    role: ChatRole
    content: str


@dataclass(frozen=True)
class RenderedPrompt:
    """The prompt text, and whether the template already put the special tokens (BOS) in it."""

    text: str
    has_special_tokens: bool


class ChatTemplate:
    """A model's chat template, ready to render."""

    def __init__(self, template: str, bos_token: str, eos_token: str) -> None:
        """Compile ``template`` (Jinja, as in the GGUF's ``tokenizer.chat_template``)."""
        self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos_token, bos_token=bos_token)

    @classmethod
    def from_gguf(cls, facts: GgufFacts) -> ChatTemplate | None:
        """The template the GGUF file carries, or None when it has none."""
        if not facts.chat_template:
            return None
        return cls(facts.chat_template, facts.bos_token, facts.eos_token)

    def render(self, turns: Sequence[ChatTurn], field: str = "messages") -> RenderedPrompt:
        """Render ``turns`` followed by the assistant's generation prompt.

        Raises:
            InvalidArgument: the template refuses the conversation (e.g. roles that do not
                alternate), naming ``field``.
        """
        messages: list[Any] = [{"role": t.role, "content": t.content} for t in turns]
        try:
            result = self._formatter(messages=messages)
        except ValueError as exc:  # the template's raise_exception(...)
            raise InvalidArgument(field, f"the model's chat template refused it: {exc}") from None
        return RenderedPrompt(result.prompt, bool(result.added_special))
