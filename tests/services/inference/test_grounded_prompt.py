"""The grounded prompt's layout on the bundled model's tokenizer and template, and the retrieval helpers.

The property that keeps a grounded conversation's KV cache warm: turn N's prompt (with its
passages) and turn N+1's prompt (turn N as history stores it, without them) share every
token up to turn N's user text, and the next-turn guess made after turn N is a prefix of
turn N+1's prompt.
"""

from __future__ import annotations

import pytest

from services.inference.chat_template import ChatTemplate, ChatTurn
from services.inference.gguf_meta import read_gguf
from services.inference.grounding import (
    Citation,
    citations_of,
    grounded_text,
    is_follow_up,
    offset_of,
    query_of,
    source_of,
)
from services.inference.history_client import StoredMessage
from services.inference.ingest_client import Found
from services.inference.kvstate import common_prefix
from services.inference.models import Tokenizer
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


def cite(number: int, text: str, source: str = "notes.md") -> Citation:
    return Citation(number, "notes", f"id-{number}", source, number, 0.5, text)


def history(turns: int) -> list[StoredMessage]:
    """Newest first, ending with the user's question of turn ``turns``."""
    messages = []
    for t in range(1, turns):
        messages.append(StoredMessage(2 * t - 1, False, f"Question {t} about the river Anselm?"))
        messages.append(StoredMessage(2 * t, True, f"It floods in April [{t}]."))
    messages.append(StoredMessage(2 * turns - 1, False, f"Question {turns} about the river Anselm?"))
    return messages[::-1]


def test_the_passages_go_after_the_history_so_the_next_turn_reuses_the_prefix(
    tokenizer: Tokenizer, template: ChatTemplate
) -> None:
    passages = [cite(1, "The river Anselm floods every April."), cite(2, "Snow melts in the Varn mountains.")]
    turn3 = history(3)
    grounded = grounded_text(turn3[0].text, passages)
    prompt = fit_prompt(tokenizer, template, SYSTEM, turn3, 2000, True, grounded)
    assert prompt is not None and prompt.stored_turns is not None
    assert prompt.turns[-1] == ChatTurn("user", grounded) and prompt.stored_turns[-1].content == turn3[0].text
    assert prompt.turns[:-1] == prompt.stored_turns[:-1]  # everything before the latest turn is as stored
    rendered = template.render(prompt.turns).text
    assert rendered.index("[1] (notes.md) The river Anselm") > rendered.index("It floods in April [2].")
    # Turn 4: turn 3 is in history as written (no passages), the assistant's reply after it.
    reply = "It floods in April [1]."
    turn4 = [StoredMessage(7, False, "Question 4 about the river Anselm?"), StoredMessage(6, True, reply), *turn3]
    grounded4 = grounded_text(turn4[0].text, [cite(1, "The river Anselm floods every April.")])
    after = fit_prompt(tokenizer, template, SYSTEM, turn4, 2000, True, grounded4)
    assert after is not None
    shared = common_prefix(prompt.tokens, after.tokens)
    plain3 = fit_prompt(tokenizer, template, SYSTEM, turn3, 2000, True)
    assert plain3 is not None
    # Shared: the system prompt, turns 1 and 2, and turn 3's markup up to its text; not its passages.
    upto_turn3_text = template.render(prompt.stored_turns).text.index(turn3[0].text)
    assert shared >= len(tokenizer.tokenize(template.render(prompt.stored_turns).text[:upto_turn3_text], False)) - 2
    assert shared < len(plain3.tokens)
    # What the slot evaluates ahead after turn 3 is a prefix of turn 4's prompt (made from the stored turns).
    ahead = prompt.next_turn(reply)
    assert ahead and after.tokens[: len(ahead)] == ahead


def test_without_passages_the_prompt_is_the_plain_one(tokenizer: Tokenizer, template: ChatTemplate) -> None:
    plain = fit_prompt(tokenizer, template, SYSTEM, history(2), 2000, True)
    assert plain is not None and plain.stored_turns is None and plain.citations is None


def test_a_follow_up_is_searched_with_the_turn_before() -> None:
    assert is_follow_up("Why?") and is_follow_up("And what about the other one")
    assert is_follow_up("When was it painted green?")
    assert not is_follow_up("When does the river Anselm flood each year?")
    assert query_of(["Why?", "When does the river Anselm flood?"]) == "When does the river Anselm flood?\nWhy?"
    assert query_of(["Who keeps the Zorvath lighthouse today?", "When does the river flood?"]) == (
        "Who keeps the Zorvath lighthouse today?"
    )
    assert query_of(["Why?"]) == "Why?"  # nothing before it


def test_citations_are_the_best_hits_of_all_collections_above_the_threshold_numbered_from_one() -> None:
    found = [
        Found("a", "1", 0.31, {"text": "low", "source": "a.txt", "passage": 2}),
        Found("b", "7", 0.92, {"text": "best", "title": "B title", "source": "b.txt", "offset": 120}),
        Found("a", "3", 0.55, {"text": "x" * 50}),
        Found("b", "9", 0.10, {"text": "too low"}),
    ]
    cited = citations_of(found, limit=2, min_score=0.3, chars=20)
    assert [(c.number, c.collection, c.point_id) for c in cited] == [(1, "b", "7"), (2, "a", "3")]
    assert cited[0].source == "B title" and cited[0].offset == 120 and cited[1].passage == "x" * 20
    assert citations_of(found, limit=4, min_score=0.95, chars=20) == ()
    assert source_of({"file": "f.pdf"}) == "f.pdf" and source_of({}) == ""
    assert offset_of({"passage": 3}) == 3 and offset_of({"offset": True}) == 0 and offset_of({}) == 0
