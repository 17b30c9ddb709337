"""Reply: answer an assistant conversation from its history, stream it, store it.

The prompt is the system prompt plus the newest turns that fit in ``n_ctx - max_tokens``,
read backward page by page from history (the first page while the conversation is checked).
Prompts are tokenized piece by piece with a cache (``PieceTokenizer``), so a turn tokenizes
only its new messages. The conversation id keys its saved KV state, and the slot evaluates
the start of the next turn's prompt right after the reply (``Prompt.next_turn``), so the
next turn processes only the user's new message. A reply that is cancelled or fails is not
stored; one reply at a time per conversation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass

from services.inference.chat_template import ChatTemplate, ChatTurn
from services.inference.engine import Admitted, Completed, GenerationEngine, GenerationEvent
from services.inference.errors import ReplyAlreadyRunning
from services.inference.history_client import HistoryClient, MessagePage, StoredMessage
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


ReplyEvent = Admitted | TokenOut | ReplyCompleted


class ReplyRunner:
    """Answers conversations as the assistant."""

    def __init__(
        self,
        engine: GenerationEngine,
        registry: ModelRegistry,
        history: HistoryClient,
        live: LiveTokens,
        system_prompt: str,
    ) -> None:
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
    ) -> AsyncIterator[ReplyEvent]:
        """Stream the reply: ``Admitted``, ``TokenOut``s, then ``ReplyCompleted``."""
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
            prompt = await self._prompt(model, conversation_id, credentials, sampling.max_tokens, newest)
            events = self._engine.generate(
                user_id, request_id, model, prompt.tokens, sampling,
                prompt_field="conversation_id", cache_key=conversation_id, arrived=arrived,
                next_turn=prompt.next_turn,
            )  # fmt: skip
            rid = ""
            users = conversation.member_user_ids
            async for event in events:
                if isinstance(event, Admitted):
                    rid = event.request_id
                    yield event
                elif isinstance(event, TokenOut):
                    await self._live.token(users, conversation_id, rid, event.index, event.text, done=False)
                    yield event
                else:
                    yield await self._finish(event, users, conversation_id, rid, user_id, credentials)
        finally:
            self._running.discard(conversation_id)

    async def _finish(
        self,
        done: GenerationEvent,
        users: tuple[str, ...],
        conversation_id: str,
        request_id: str,
        user_id: str,
        credentials: str,
    ) -> ReplyCompleted:
        assert isinstance(done, Completed)
        message_id = ""
        text = done.text.strip()
        if done.reason is not FinishReason.CANCELLED and text:
            message_id = await self._history.store_reply(
                conversation_id, request_id, text[:MAX_STORED_CHARS], user_id, credentials
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
    ) -> Prompt:
        """The system prompt and the newest turns that leave room for ``max_tokens``.

        Pages are read backward until the budget is spent or the conversation's start is
        reached; the tokenizing and rendering of each page read is one call in a thread.
        """
        page = await newest
        template = model.template
        if template is None:
            raise InvalidArgument("model", f"{model.name!r} has no chat template: it cannot answer conversations")
        budget = model.n_ctx - max_tokens
        system = (ChatTurn("system", self._system_prompt),) if self._system_prompt else ()
        messages: list[StoredMessage] = []
        while True:
            messages.extend(page.messages)
            complete = not page.next_token
            prompt = await asyncio.to_thread(fit_prompt, model.tokenizer, template, system, messages, budget, complete)
            if prompt is not None:
                return prompt
            page = await self._history.newest_page(conversation_id, credentials, page.next_token)


@dataclass(frozen=True)
class Prompt:
    """A Reply's prompt: its tokens, the turns they render, and a guess at the next turn's start."""

    tokens: list[int]
    turns: tuple[ChatTurn, ...]
    tokenizer: Tokenizer
    template: ChatTemplate

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
        base = [*self.turns, ChatTurn("assistant", reply)]
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
) -> Prompt | None:
    """The prompt of the newest messages that fit in ``budget`` tokens (blocking: tokenizes).

    Returns None when every message given fits and the conversation has older ones
    (``complete`` False): read another page.

    Raises:
        InvalidArgument: the template refuses the conversation (naming ``conversation_id``).
    """
    pieces = tokenizer.pieces
    used = sum(pieces.count(turn.content) for turn in system)
    chosen = 0
    for message in newest_first:
        cost = pieces.count(message.text) + TEMPLATE_TOKENS_PER_MESSAGE
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
        turns = (*system, *(ChatTurn("assistant" if m.from_assistant else "user", m.text) for m in oldest_first))
        rendered = template.render(turns, field="conversation_id")
        tokens = pieces.tokenize(rendered.text, add_bos=not rendered.has_special_tokens)
        if len(tokens) <= budget or len(oldest_first) <= 1:
            return Prompt(tokens, turns, tokenizer, template)
        oldest_first.pop(0)
