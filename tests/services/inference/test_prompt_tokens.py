"""Prompts tokenized piece by piece, from a cache, are exactly the tokens of the whole prompt."""

from __future__ import annotations

import random

import pytest

from services.inference.chat_template import ChatTemplate, ChatTurn
from services.inference.gguf_meta import read_gguf
from services.inference.history_client import StoredMessage
from services.inference.models import Tokenizer
from services.inference.prompt_tokens import PieceTokenizer, SpecialToken
from services.inference.reply import fit_prompt
from services.inference.settings import bundled_model_path

SYSTEM = (ChatTurn("system", "You are a helpful assistant."),)


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer(bundled_model_path(), 1_000_000)


@pytest.fixture(scope="module")
def template() -> ChatTemplate:
    template = ChatTemplate.from_gguf(read_gguf(bundled_model_path()))
    assert template is not None
    return template


def conversation(turns: int) -> list[StoredMessage]:
    """Newest first, as history pages them."""
    messages = []
    for t in range(turns):
        messages.append(StoredMessage(2 * t + 1, False, f"Question {t}: what is {t} squared?"))
        messages.append(StoredMessage(2 * t + 2, True, f"{t} squared is {t * t}."))
    return messages[::-1]


def test_a_chat_prompt_tokenized_in_pieces_is_the_whole_prompt_tokenized(
    tokenizer: Tokenizer, template: ChatTemplate
) -> None:
    rendered = template.render([*SYSTEM, ChatTurn("user", "Hi <|im_end|> there"), ChatTurn("assistant", "Hello!")])
    whole = tokenizer.tokenize(rendered.text, add_bos=False)
    assert tokenizer.pieces.tokenize(rendered.text, add_bos=False) == whole
    assert tokenizer.pieces.tokenize(rendered.text, add_bos=False) == whole  # now from the cache
    assert len(tokenizer.pieces.pieces(rendered.text)) >= 6


def test_text_with_special_token_fragments_tokenizes_as_a_whole_would(tokenizer: Tokenizer) -> None:
    pieces = tokenizer.pieces
    rng = random.Random(7)
    parts = ["a", " ", "\n", "<", "|", "im_start", "<|im_start|>", "<|im_end|>", "<|im", "_end|>", "日本", "<file_sep>"]
    for _ in range(500):
        text = "".join(rng.choice(parts) for _ in range(rng.randint(0, 24)))
        assert pieces.tokenize(text, add_bos=False) == tokenizer.tokenize(text, add_bos=False), text


def test_no_cut_where_a_special_token_spans_it_or_strips_its_left() -> None:
    specials = [SpecialToken("<a>", False), SpecialToken("x<a>y", True), SpecialToken("<b>", True)]
    pieces = PieceTokenizer(lambda text, bos: [ord(c) for c in text], specials, 1000)
    assert pieces.pieces("1<a>2x<a>y3 <b>4") == ["1", "<a>2x<a>y3 <b>4"]


def test_an_edited_earlier_message_changes_the_prompt(tokenizer: Tokenizer, template: ChatTemplate) -> None:
    messages = conversation(5)
    before = fit_prompt(tokenizer, template, SYSTEM, messages, 2000, complete=True)
    assert before is not None
    edited = list(messages)
    oldest = edited[-1]
    edited[-1] = StoredMessage(oldest.sequence, oldest.from_assistant, "Question 0: what is 10 squared?")
    after = fit_prompt(tokenizer, template, SYSTEM, edited, 2000, complete=True)
    assert after is not None
    rendered = template.render(after.turns)
    assert after.tokens == tokenizer.tokenize(rendered.text, add_bos=False)  # not the cached, pre-edit pieces
    assert after.tokens != before.tokens and "10 squared" in rendered.text
    assert after.tokens[:8] == before.tokens[:8]


def test_the_prompt_keeps_the_newest_messages_that_fit_and_asks_for_more_when_all_fit(
    tokenizer: Tokenizer, template: ChatTemplate
) -> None:
    messages = conversation(20)
    assert fit_prompt(tokenizer, template, SYSTEM, messages[:10], 2000, complete=False) is None  # read on
    small = fit_prompt(tokenizer, template, SYSTEM, messages, 200, complete=False)
    assert small is not None and len(small.tokens) <= 200
    assert small.turns[0] == SYSTEM[0] and small.turns[1].role == "user"
    assert small.turns[-1].content == messages[0].text  # the newest message is in


def test_the_next_turn_starts_with_this_prompt_and_the_reply_as_stored(
    tokenizer: Tokenizer, template: ChatTemplate
) -> None:
    messages = [StoredMessage(7, False, "What is 3 squared?"), *conversation(3)]
    prompt = fit_prompt(tokenizer, template, SYSTEM, messages, 2000, complete=True)
    assert prompt is not None
    ahead = prompt.next_turn("  It is 9.  ")
    later = [StoredMessage(9, False, "And 4 squared?"), StoredMessage(8, True, "It is 9."), *messages]
    following = fit_prompt(tokenizer, template, SYSTEM, later, 2000, complete=True)
    assert following is not None
    assert following.tokens[: len(ahead)] == ahead and len(ahead) > len(prompt.tokens)
    assert len(following.tokens) - len(ahead) <= len(tokenizer.tokenize("And 4 squared?", add_bos=False)) + 8
    assert prompt.next_turn("   ") == []
