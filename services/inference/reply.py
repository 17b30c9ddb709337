"""Reply: answer an assistant conversation from its history, stream it, store it.

The prompt is the system prompt plus the newest turns that fit in ``n_ctx - max_tokens``,
read backward page by page from history. The conversation id keys its saved KV state, so
the next turn processes only what is new. A reply that is cancelled or fails is not
stored; one reply at a time per conversation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from services.inference.chat_template import ChatTemplate, ChatTurn
from services.inference.engine import Admitted, Completed, GenerationEngine, GenerationEvent
from services.inference.errors import ReplyAlreadyRunning
from services.inference.history_client import HistoryClient, StoredMessage
from services.inference.live import LiveTokens
from services.inference.models import GenerationModel, ModelRegistry
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
        conversation = await self._history.conversation(conversation_id, credentials)
        # The request's model wins; else the one the conversation was created with; else the default.
        model = self._registry.generator(model_name or conversation.model)
        if conversation_id in self._running:
            raise ReplyAlreadyRunning(conversation_id)
        self._running.add(conversation_id)
        try:
            tokens = await self._prompt(model, conversation_id, credentials, sampling.max_tokens)
            events = self._engine.generate(
                user_id, request_id, model, tokens, sampling,
                prompt_field="conversation_id", cache_key=conversation_id, arrived=arrived,
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
                    yield await self._finish(event, users, conversation_id, rid, credentials)
        finally:
            self._running.discard(conversation_id)

    async def _finish(
        self, done: GenerationEvent, users: tuple[str, ...], conversation_id: str, request_id: str, credentials: str
    ) -> ReplyCompleted:
        assert isinstance(done, Completed)
        message_id = ""
        text = done.text.strip()
        if done.reason is not FinishReason.CANCELLED and text:
            message_id = await self._history.store_reply(
                conversation_id, request_id, text[:MAX_STORED_CHARS], credentials
            )
        await self._live.token(users, conversation_id, request_id, done.usage.completion_tokens, "", done=True)
        return ReplyCompleted(done, message_id)

    async def _prompt(
        self, model: GenerationModel, conversation_id: str, credentials: str, max_tokens: int
    ) -> list[int]:
        """The prompt's tokens: the system prompt and the newest turns that leave room for ``max_tokens``."""
        template = model.template
        if template is None:
            raise InvalidArgument("model", f"{model.name!r} has no chat template: it cannot answer conversations")
        budget = model.n_ctx - max_tokens
        system = [ChatTurn("system", self._system_prompt)] if self._system_prompt else []
        used = len(await model.tokenize(self._system_prompt, add_bos=False)) if system else 0
        newest: list[StoredMessage] = []
        async for message in self._history.newest_first(conversation_id, credentials):
            cost = len(await model.tokenize(message.text, add_bos=False)) + TEMPLATE_TOKENS_PER_MESSAGE
            if newest and used + cost > budget:
                break
            newest.append(message)
            used += cost
        oldest_first = list(reversed(newest))
        while True:
            while len(oldest_first) > 1 and oldest_first[0].from_assistant:
                oldest_first.pop(0)  # a chat starts with the user's turn (some templates insist)
            tokens = await self._render(model, template, system, oldest_first)
            if len(tokens) <= budget or len(oldest_first) <= 1:
                return tokens
            oldest_first.pop(0)

    @staticmethod
    async def _render(
        model: GenerationModel, template: ChatTemplate, system: list[ChatTurn], messages: list[StoredMessage]
    ) -> list[int]:
        turns = [*system, *(ChatTurn("assistant" if m.from_assistant else "user", m.text) for m in messages)]
        rendered = template.render(turns, field="conversation_id")
        return await model.tokenize(rendered.text, add_bos=not rendered.has_special_tokens)
