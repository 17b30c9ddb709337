"""Reply: answer an assistant conversation from its history, stream it, store it.

The prompt is the system prompt plus the newest turns that fit in ``n_ctx - max_tokens``,
read backward page by page from history (the first page while the conversation is checked).
Prompts are tokenized piece by piece with a cache (``PieceTokenizer``), so a turn tokenizes
only its new messages. The conversation id keys its saved KV state, and the slot evaluates
the start of the next turn's prompt right after the reply (``Prompt.next_turn``), so the
next turn processes only the user's new message. A reply that is cancelled or fails is not
stored; one reply at a time per conversation.

A grounded reply (collections named by the request or remembered by the conversation)
first searches them as the caller and puts the passages into the latest user turn, after
the history (:mod:`services.inference.grounding` says why that keeps the cached prefix
valid); the next turn's guess is made from the turns as history stores them (without the
passages). When nothing scores high enough, the reply is the fixed "nothing relevant"
answer, streamed and stored without a generation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field

from services.inference.chat_template import ChatTemplate, ChatTurn
from services.inference.engine import Admitted, Completed, GenerationEngine, GenerationEvent, Usage
from services.inference.errors import ReplyAlreadyRunning
from services.inference.grounding import Citation, grounded_text, nothing_found, query_of, retrieve
from services.inference.history_client import HistoryClient, MessagePage, StoredMessage
from services.inference.ingest_client import IngestSearch
from services.inference.kvstate import common_prefix
from services.inference.live import LiveTokens
from services.inference.models import GenerationModel, ModelRegistry, Tokenizer
from services.inference.worker import FinishReason, Sampling, TokenOut
from services.runtime.errors import InvalidArgument

log = logging.getLogger("chatmesh.inference.reply")

# Template tokens around one message (role markers, separators); a generous estimate.
TEMPLATE_TOKENS_PER_MESSAGE = 8
# AppendAssistantMessage's limit on a reply's length.
MAX_STORED_CHARS = 16_000


@dataclass(frozen=True)
class ReplyCompleted:
    """The reply ended; ``message_id`` is the stored message ('' when nothing was stored)."""

    completed: Completed
    message_id: str


@dataclass(frozen=True)
class Grounded:
    """A grounded reply's passages (empty: nothing relevant was found) and the collections searched."""

    citations: tuple[Citation, ...]
    collections: tuple[str, ...]


@dataclass(frozen=True)
class Grounding:
    """How grounded replies search: ingest, and how many passages of what score and length."""

    search: IngestSearch
    passages: int
    min_score: float
    passage_chars: int


ReplyEvent = Admitted | Grounded | TokenOut | ReplyCompleted


class ReplyRunner:
    """Answers conversations as the assistant."""

    def __init__(
        self,
        engine: GenerationEngine,
        registry: ModelRegistry,
        history: HistoryClient,
        live: LiveTokens,
        system_prompt: str,
        grounding: Grounding | None = None,
    ) -> None:
        self._grounding = grounding
        self._engine = engine
        self._registry = registry
        self._history = history
        self._live = live
        self._system_prompt = system_prompt
        self._running: set[str] = set()

    async def reply(
        self,
        user_id: str,
        credentials: str,
        conversation_id: str,
        model_name: str,
        sampling: Sampling,
        request_id: str,
        collections: Sequence[str] = (),
    ) -> AsyncIterator[ReplyEvent]:
        """Stream the reply: ``Admitted``, ``Grounded`` (grounded replies), ``TokenOut``s, then ``ReplyCompleted``.

        ``collections``: the caller's collections to answer from; empty: the conversation's own.
        """
        arrived = time.perf_counter()
        # The newest page is read while the conversation is checked: one round trip to history, not two.
        # (It is only used once the check passes; history applies its own membership rule to both.)
        newest = asyncio.ensure_future(self._history.newest_page(conversation_id, credentials))
        try:
            conversation = await self._history.conversation(conversation_id, credentials)
            # The request's model wins; else the one the conversation was created with; else the default.
            model = self._registry.generator(model_name or conversation.model)
            if conversation_id in self._running:
                raise ReplyAlreadyRunning(conversation_id)
        except BaseException:
            newest.cancel()
            await asyncio.gather(newest, return_exceptions=True)
            raise
        self._running.add(conversation_id)
        try:
            names = tuple(collections) or conversation.collections
            prompt = await self._prompt(model, conversation_id, credentials, sampling.max_tokens, newest, names)
            users = conversation.member_user_ids
            if prompt.citations is not None and not prompt.citations:
                async for fixed in self._nothing_found(
                    model.name, names, request_id, arrived, users, user_id, credentials, conversation_id
                ):
                    yield fixed
                return
            events = self._engine.generate(
                user_id, request_id, model, prompt.tokens, sampling,
                prompt_field="conversation_id", cache_key=conversation_id, arrived=arrived,
                next_turn=prompt.next_turn,
            )  # fmt: skip
            rid = ""
            cited = prompt.citations or ()
            async for event in events:
                if isinstance(event, Admitted):
                    rid = event.request_id
                    yield event
                    if prompt.citations is not None:
                        yield Grounded(prompt.citations, names)
                elif isinstance(event, TokenOut):
                    await self._live.token(users, conversation_id, rid, event.index, event.text, done=False)
                    yield event
                else:
                    yield await self._finish(event, users, conversation_id, rid, user_id, credentials, cited)
        finally:
            self._running.discard(conversation_id)

    async def _nothing_found(
        self,
        model: str,
        names: tuple[str, ...],
        request_id: str,
        arrived: float,
        users: tuple[str, ...],
        user_id: str,
        credentials: str,
        conversation_id: str,
    ) -> AsyncIterator[ReplyEvent]:
        """The reply when no passage is relevant: the fixed answer as one chunk, stored, no generation."""
        rid = request_id or str(uuid.uuid4())
        yield Admitted(rid, model, 0, 0)
        yield Grounded((), names)
        text = nothing_found(names)
        await self._live.token(users, conversation_id, rid, 0, text, done=False)
        yield TokenOut(text, 0, 0)
        ttft_ms = int((time.perf_counter() - arrived) * 1000)
        done = Completed(FinishReason.STOP, "", Usage(0, 1, 0, ttft_ms, 0.0, 0), text)
        yield await self._finish(done, users, conversation_id, rid, user_id, credentials, ())

    async def _finish(
        self,
        done: GenerationEvent,
        users: tuple[str, ...],
        conversation_id: str,
        request_id: str,
        user_id: str,
        credentials: str,
        citations: tuple[Citation, ...] = (),
    ) -> ReplyCompleted:
        assert isinstance(done, Completed)
        message_id = ""
        text = done.text.strip()
        if done.reason is not FinishReason.CANCELLED and text:
            message_id = await self._history.store_reply(
                conversation_id, request_id, text[:MAX_STORED_CHARS], user_id, credentials, citations
            )
        await self._live.token(users, conversation_id, request_id, done.usage.completion_tokens, "", done=True)
        return ReplyCompleted(done, message_id)

    async def _prompt(
        self,
        model: GenerationModel,
        conversation_id: str,
        credentials: str,
        max_tokens: int,
        newest: Awaitable[MessagePage],
        collections: tuple[str, ...] = (),
    ) -> Prompt:
        """The system prompt and the newest turns that leave room for ``max_tokens``.

        Pages are read backward until the budget is spent or the conversation's start is
        reached; the tokenizing and rendering of each page read is one call in a thread.
        With ``collections`` the latest user turn carries the passages found for it; a
        prompt with ``citations == ()`` found nothing relevant (its tokens are not used).
        """
        page = await newest
        template = model.template
        if template is None:
            raise InvalidArgument("model", f"{model.name!r} has no chat template: it cannot answer conversations")
        budget = model.n_ctx - max_tokens
        system = (ChatTurn("system", self._system_prompt),) if self._system_prompt else ()
        grounded: str | None = None
        citations: tuple[Citation, ...] | None = None
        if collections and page.messages and not page.messages[0].from_assistant:
            citations = await self._cite(model, page, collections, credentials, budget)
            if not citations:
                return Prompt([], (), model.tokenizer, template, citations=())
            grounded = grounded_text(page.messages[0].text, citations)
        messages: list[StoredMessage] = []
        while True:
            messages.extend(page.messages)
            complete = not page.next_token
            prompt = await asyncio.to_thread(
                fit_prompt, model.tokenizer, template, system, messages, budget, complete, grounded
            )
            if prompt is not None:
                return dataclasses.replace(prompt, citations=citations)
            page = await self._history.newest_page(conversation_id, credentials, page.next_token)

    async def _cite(
        self, model: GenerationModel, page: MessagePage, collections: tuple[str, ...], credentials: str, budget: int
    ) -> tuple[Citation, ...]:
        """The passages for the newest page's latest user turn, as many as fit in half the prompt's budget."""
        if self._grounding is None:
            raise InvalidArgument("collections", "this inference service has no ingest to search")
        g = self._grounding
        users = [m.text for m in page.messages if not m.from_assistant]
        query = query_of(users)
        citations = await retrieve(g.search, collections, query, credentials, g.passages, g.min_score, g.passage_chars)
        question = page.messages[0].text
        while len(citations) > 1:
            count = await asyncio.to_thread(model.tokenizer.pieces.count, grounded_text(question, citations))
            if count <= budget // 2:
                break
            citations = citations[:-1]
        return citations


@dataclass(frozen=True)
class Prompt:
    """A Reply's prompt: its tokens, the turns they render, and a guess at the next turn's start."""

    tokens: list[int]
    turns: tuple[ChatTurn, ...]
    tokenizer: Tokenizer
    template: ChatTemplate
    stored_turns: tuple[ChatTurn, ...] | None = None
    """The turns as history stores them, when they differ from ``turns`` (a grounded turn's passages)."""
    citations: tuple[Citation, ...] | None = field(default=None, compare=False)
    """A grounded prompt's passages (``()``: nothing relevant found); None for a plain reply."""

    def next_turn(self, completion: str) -> list[int]:
        """The tokens the next turn's prompt will start with once ``completion`` is stored (a guess; blocking).

        These turns, the reply as history will store it, and the template's markup up to the
        next user message's text (what two different next messages share). A wrong guess only
        costs KV reuse: the next turn reuses its longest *exact* token prefix and no more.
        """
        reply = completion.strip()[:MAX_STORED_CHARS]
        if not reply:
            return []
        pieces = self.tokenizer.pieces
        # The next turn renders this one as history stores it: a grounded turn without its passages.
        base = [*(self.stored_turns or self.turns), ChatTurn("assistant", reply)]
        probes = []
        for text in ("A", "1"):
            try:
                rendered = self.template.render([*base, ChatTurn("user", text)])
            except InvalidArgument:  # the template wants another order of roles: no guess
                return []
            probes.append(pieces.tokenize(rendered.text, add_bos=not rendered.has_special_tokens))
        return probes[0][: common_prefix(probes[0], probes[1])]


def fit_prompt(
    tokenizer: Tokenizer,
    template: ChatTemplate,
    system: tuple[ChatTurn, ...],
    newest_first: Sequence[StoredMessage],
    budget: int,
    complete: bool,
    grounded: str | None = None,
) -> Prompt | None:
    """The prompt of the newest messages that fit in ``budget`` tokens (blocking: tokenizes).

    Returns None when every message given fits and the conversation has older ones
    (``complete`` False): read another page. ``grounded``: the text the newest message (the
    user's) is given to the model as instead of its own (its passages, then it).

    Raises:
        InvalidArgument: the template refuses the conversation (naming ``conversation_id``).
    """
    pieces = tokenizer.pieces
    used = sum(pieces.count(turn.content) for turn in system)
    chosen = 0
    for i, message in enumerate(newest_first):
        text = grounded if grounded is not None and i == 0 else message.text
        cost = pieces.count(text) + TEMPLATE_TOKENS_PER_MESSAGE
        if chosen and used + cost > budget:
            break
        chosen += 1
        used += cost
    else:
        if not complete:
            return None
    oldest_first = list(reversed(newest_first[:chosen]))
    while True:
        while len(oldest_first) > 1 and oldest_first[0].from_assistant:
            oldest_first.pop(0)  # a chat starts with the user's turn (some templates insist)
        stored = (*system, *(ChatTurn("assistant" if m.from_assistant else "user", m.text) for m in oldest_first))
        turns = stored
        if grounded is not None:  # the newest message is the user's: it goes in with its passages
            turns = (*stored[:-1], ChatTurn("user", grounded))
        rendered = template.render(turns, field="conversation_id")
        tokens = pieces.tokenize(rendered.text, add_bos=not rendered.has_special_tokens)
        if len(tokens) <= budget or len(oldest_first) <= 1:
            return Prompt(tokens, turns, tokenizer, template, stored if grounded is not None else None)
        oldest_first.pop(0)
