"""``client.ask``: one question to the assistant, answered from the user's documents.

What an app does by hand for a grounded answer, as one object: create an assistant
conversation that remembers the collections (unless it goes on in one), send the
question, then stream ``Reply`` with those collections. :class:`Answer` is iterated as
the answer's text, like :class:`~chatmesh.client.streams.AssistantReply`, whose
citations it passes on; its ``conversation_id`` lets the next question follow up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from chatmesh.client.citations import Citation
from chatmesh.client.streams import AssistantReply
from chatmesh.history.v1 import history_pb2
from chatmesh.inference.v1 import inference_pb2

#: Makes (or finds) the conversation and sends the question: the conversation's id and the stored question.
Prepare = Callable[[], Awaitable[tuple[str, history_pb2.Message]]]
#: The reply stream for a conversation id.
ReplyFor = Callable[[str], AssistantReply]


class Answer:
    """The assistant's answer to one question (``client.ask``), iterated as its text.

    ``async for text in answer`` creates the conversation when there is none (remembering
    the collections), sends the question, then yields the reply token by token. By the
    first text ``conversation_id``, ``question`` (the stored message) and, for a grounded
    answer, ``citations`` are set; afterwards ``started``, ``finished`` (with the stored
    reply's ``assistant_message_id``) and ``text`` are too. Iterate it once, or ``await
    answer.collect()`` for the whole text.

    Errors come from the iteration as ``grpc.aio.AioRpcError``: NOT_FOUND naming
    ``collections[i]`` (not a collection of the caller's: nothing is generated or
    stored, the question stays in the conversation), INVALID_ARGUMENT (``text``, a
    collection name), RESOURCE_EXHAUSTED (the assistant's queue is full).
    """

    def __init__(self, prepare: Prepare, reply_for: ReplyFor, request_id: str) -> None:
        self._prepare = prepare
        self._reply_for = reply_for
        self._request_id = request_id
        self._reply: AssistantReply | None = None
        self._iterated = False
        self.conversation_id = ""
        self.question: history_pb2.Message | None = None

    def __repr__(self) -> str:
        done = self.finished is not None
        return f"Answer(conversation_id={self.conversation_id!r}, citations={len(self.citations)}, done={done})"

    @property
    def request_id(self) -> str:
        """The reply's request id: pass it to Cancel (or call :meth:`cancel`)."""
        return self._request_id

    @property
    def reply(self) -> AssistantReply | None:
        """The reply stream, once the question is sent."""
        return self._reply

    @property
    def citations(self) -> tuple[Citation, ...]:
        """The passages the answer cites, numbered as its text refers to them; () before they arrive."""
        return self._reply.citations if self._reply is not None else ()

    @property
    def grounded(self) -> bool:
        """True once a grounded reply's citations arrived (an empty tuple: nothing relevant was found)."""
        return self._reply is not None and self._reply.grounded

    @property
    def started(self) -> inference_pb2.Started | None:
        """The reply's first chunk (model, prompt tokens), once it arrived."""
        return self._reply.started if self._reply is not None else None

    @property
    def finished(self) -> inference_pb2.Finished | None:
        """The reply's last chunk (finish reason, usage, the stored message's id), once it arrived."""
        return self._reply.finished if self._reply is not None else None

    @property
    def text(self) -> str:
        """The answer's text so far."""
        return self._reply.text if self._reply is not None else ""

    def __aiter__(self) -> AsyncIterator[str]:
        if self._iterated:
            raise RuntimeError("an Answer is iterated once: a second pass would send the question again")
        self._iterated = True
        return self._tokens()

    async def collect(self) -> str:
        """Read the whole answer and return its text."""
        async for _ in self:
            pass
        return self.text

    async def cancel(self) -> bool:
        """Stop the answer (from any task); True when it was still running."""
        if self._reply is None:
            return False
        return await self._reply.cancel()

    async def _tokens(self) -> AsyncIterator[str]:
        self.conversation_id, self.question = await self._prepare()
        self._reply = self._reply_for(self.conversation_id)
        async for text in self._reply:
            yield text
