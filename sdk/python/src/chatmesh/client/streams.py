"""The two streams a chat app reads: the device's events, and an assistant reply.

:class:`EventStream` keeps ``session.Connect`` open: when the stream drops (UNAVAILABLE,
a reset, the server going away, or nothing at all for ``idle_timeout_s`` while the server
sends a KeepAlive every 25 s) it reconnects with back-off from the last sequence it saw,
so the server replays the gap and no event is lost or repeated.

:class:`AssistantReply` streams ``inference.Reply`` token by token, and a grounded reply's
citations before its first token. It is retried only before its first chunk: after that
the reply is running, and a retry would start another.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType

import grpc

from chatmesh.client.citations import Citation, citations_of
from chatmesh.client.retry import RetryPolicy
from chatmesh.client.tokens import TokenKeeper
from chatmesh.inference.v1 import inference_pb2, inference_pb2_grpc
from chatmesh.session.v1 import session_pb2, session_pb2_grpc

log = logging.getLogger("chatmesh.client")

# A Connect that ends with one of these is opened again; any other status is the caller's to see.
_RECONNECT_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED}
)

ConnectCall = grpc.aio.UnaryStreamCall[session_pb2.ConnectRequest, session_pb2.ConnectResponse]


class EventStream:
    """The device's live events (``session.Connect``), reconnecting by itself.

    Iterate it with ``async for``; use it as ``async with`` to have it open and live
    (the server sends new events from then on) before the block starts. Each item is a
    ``ConnectResponse``: ``sequence`` (0 for events that are never replayed) and
    ``event``. A ``resync_required`` event means the gap was too old to replay: reload
    the conversations from history, then keep reading.

    Raises from iteration: ``grpc.aio.AioRpcError`` for a status that reconnecting
    cannot fix (UNAUTHENTICATED after a refresh, INVALID_ARGUMENT...) or after
    ``retry.max_attempts`` failed connects in a row; ``ConnectionError`` when the stream
    keeps ending or going quiet that many times in a row.
    """

    def __init__(
        self,
        session: Callable[[], session_pb2_grpc.SessionServiceStub],
        keeper: TokenKeeper,
        retry: RetryPolicy,
        rng: random.Random,
        *,
        last_sequence: int,
        watch_user_ids: Sequence[str],
        include_keepalives: bool,
        idle_timeout_s: float,
        on_sequence: Callable[[int], None],
    ) -> None:
        self._session = session
        self._keeper = keeper
        self._retry = retry
        self._rng = rng
        self._watch = list(watch_user_ids)
        self._include_keepalives = include_keepalives
        self._idle_timeout_s = idle_timeout_s
        self._on_sequence = on_sequence
        self._last_sequence = last_sequence
        self._call: ConnectCall | None = None
        self._opened_with: str | None = None
        self._pending: deque[session_pb2.ConnectResponse] = deque()
        self._failures = 0
        self._refreshed = False
        self._closed = False

    @property
    def last_sequence(self) -> int:
        """The last replayable sequence seen; a reconnect asks for what came after it."""
        return self._last_sequence

    async def __aenter__(self) -> EventStream:
        await self.live()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> EventStream:
        return self

    async def live(self) -> None:
        """Open the stream (if it is not open) and wait for its first event: from then on it is live."""
        if self._call is None and not self._pending:
            self._pending.append(await self._next())

    async def aclose(self) -> None:
        """Close the stream; iteration ends."""
        self._closed = True
        self._drop()

    async def __anext__(self) -> session_pb2.ConnectResponse:
        while True:
            response = self._pending.popleft() if self._pending else await self._next()
            if self._include_keepalives or response.event.WhichOneof("kind") != "keep_alive":
                return response

    async def _next(self) -> session_pb2.ConnectResponse:
        """The next message of the stream, reconnecting as often as the retry policy allows."""
        while True:
            if self._closed:
                raise StopAsyncIteration
            call = self._call or self._open()
            try:
                async with asyncio.timeout(self._idle_timeout_s):
                    response = await call.read()
            except TimeoutError:
                await self._fail(None, f"no event for {self._idle_timeout_s} s")
                continue
            except grpc.aio.AioRpcError as exc:
                await self._fail(exc, exc.code().name)
                continue
            if response is grpc.aio.EOF:
                await self._fail(None, "the server ended the stream")
                continue
            assert isinstance(response, session_pb2.ConnectResponse)
            self._failures = 0
            self._refreshed = False
            if response.sequence:
                self._last_sequence = response.sequence
                self._on_sequence(response.sequence)
            return response

    def _open(self) -> ConnectCall:
        tokens = self._keeper.tokens
        self._opened_with = tokens.access_token if tokens else None
        request = session_pb2.ConnectRequest(last_sequence=self._last_sequence, watch_user_ids=self._watch)
        self._call = self._session().Connect(request)
        return self._call

    def _drop(self) -> None:
        if self._call is not None:
            self._call.cancel()
        self._call = None

    async def _fail(self, exc: grpc.aio.AioRpcError | None, why: str) -> None:
        """Drop the stream after a failure; wait before the next connect, or raise when it is time to stop."""
        self._drop()
        if self._closed:
            raise StopAsyncIteration
        code = exc.code() if exc is not None else None
        if exc is not None and code == grpc.StatusCode.UNAUTHENTICATED and not self._refreshed:
            self._refreshed = True
            try:
                await self._keeper.refresh(rejected_access_token=self._opened_with)
            except (grpc.aio.AioRpcError, LookupError):
                raise exc from None
            return
        if exc is not None and code not in _RECONNECT_CODES:
            raise exc
        self._failures += 1
        if self._failures >= self._retry.max_attempts:
            if exc is not None:
                raise exc
            raise ConnectionError(f"Connect failed {self._failures} times in a row: {why}")
        wait = self._retry.backoff_s(self._failures, self._rng)
        log.debug("Connect dropped (%s); reconnecting from sequence %d in %.3f s", why, self._last_sequence, wait)
        await asyncio.sleep(wait)


class AssistantReply:
    """One assistant reply (``inference.Reply``), iterated as the text of its tokens.

    ``async for text in reply`` yields each token's text as it is generated; afterwards
    ``started`` (request id, model, queue position), ``finished`` (finish reason, usage,
    the stored message's id) and ``text`` (the whole reply) are set. Iterate it once.

    A grounded reply (one with collections) also has ``citations``: the passages it
    answers from, numbered as its text refers to them ("[1]"). They arrive before the
    first token, so they are set by the time the first text is yielded, and
    ``on_citations`` (when given) is called with them as they arrive; ``grounded`` then
    turns True and ``searched`` names the collections searched. A grounded reply with no
    citations found nothing relevant: its text says so.
    """

    def __init__(
        self,
        inference: Callable[[], inference_pb2_grpc.InferenceServiceStub],
        keeper: TokenKeeper,
        retry: RetryPolicy,
        rng: random.Random,
        request: inference_pb2.ReplyRequest,
        on_citations: Callable[[tuple[Citation, ...]], None] | None = None,
    ) -> None:
        self._inference = inference
        self._keeper = keeper
        self._retry = retry
        self._rng = rng
        self._request = request
        self._parts: list[str] = []
        self._iterated = False
        self.started: inference_pb2.Started | None = None
        self.finished: inference_pb2.Finished | None = None
        self.citations: tuple[Citation, ...] = ()
        self.searched: tuple[str, ...] = ()
        self.grounded = False
        self._on_citations = on_citations

    @property
    def request_id(self) -> str:
        """The reply's request id (set by the client when the caller gave none): pass it to Cancel."""
        return self._request.request_id

    @property
    def text(self) -> str:
        """The reply's text so far."""
        return "".join(self._parts)

    def __aiter__(self) -> AsyncIterator[str]:
        if self._iterated:
            raise RuntimeError("an AssistantReply is iterated once: a second pass would ask for another reply")
        self._iterated = True
        return self._tokens()

    async def collect(self) -> str:
        """Read the whole reply and return its text."""
        async for _ in self:
            pass
        return self.text

    async def cancel(self) -> bool:
        """Stop the reply (from here or any other task); True when it was still running."""
        answer: inference_pb2.CancelResponse = await self._inference().Cancel(
            inference_pb2.CancelRequest(request_id=self.request_id)
        )
        return answer.was_running

    async def _tokens(self) -> AsyncIterator[str]:
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            call: grpc.aio.UnaryStreamCall[inference_pb2.ReplyRequest, inference_pb2.ReplyResponse]
            call = self._inference().Reply(self._request)
            tokens = self._keeper.tokens
            sent_with = tokens.access_token if tokens else None
            chunks = 0
            try:
                async for chunk in call:
                    chunks += 1
                    kind = chunk.WhichOneof("chunk")
                    if kind == "started":
                        self.started = chunk.started
                    elif kind == "token" and chunk.token.text:
                        self._parts.append(chunk.token.text)
                        yield chunk.token.text
                    elif kind == "citations":
                        self.citations = citations_of(chunk.citations.citations)
                        self.searched = tuple(chunk.citations.collections)
                        self.grounded = True
                        if self._on_citations is not None:
                            self._on_citations(self.citations)
                    elif kind == "finished":
                        self.finished = chunk.finished
                return
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if chunks:
                    raise
                if code == grpc.StatusCode.UNAUTHENTICATED and not refreshed:
                    refreshed = True
                    try:
                        await self._keeper.refresh(rejected_access_token=sent_with)
                    except (grpc.aio.AioRpcError, LookupError):
                        raise exc from None
                    attempt -= 1
                    continue
                if code != grpc.StatusCode.UNAVAILABLE or attempt >= self._retry.max_attempts:
                    raise
                wait = self._retry.backoff_s(attempt, self._rng)
                log.debug("Reply: UNAVAILABLE before its first chunk; retrying in %.3f s", wait)
                await asyncio.sleep(wait)
            finally:
                call.cancel()
