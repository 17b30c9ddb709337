"""Running generations: admission (request ids, slots, queue), the worker thread, the token stream.

A generation's tokens cross from its worker thread to the event loop through a
``HandOver`` (the loop is woken only when it waits for a token). When the consumer of
:meth:`GenerationEngine.generate` stops (the caller went away: grpc cancels the handler
task) or :meth:`GenerationEngine.cancel` names the request, the cancel flag stops the
worker within one token and the slot goes back to the pool at once.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from services.inference.errors import Draining, PromptTooLong, QueueFull, RequestIdInUse, UserQueueFull
from services.inference.metrics import InferenceMetrics
from services.inference.models import GenerationModel
from services.inference.slots import Reservation
from services.inference.worker import FinishReason, Job, Sampling, Slot, TokenOut, WorkDone

T = TypeVar("T")


class HandOver(Generic[T]):
    """Items from a worker thread to the event loop, in order.

    The worker wakes the loop (``call_soon_threadsafe``, a write to its self-pipe) only when
    the consumer is waiting: items that arrive while the loop is busy (sending the previous
    token) are taken without another wake-up. Each item is still handed over on its own.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: T) -> None:
        """Hand ``item`` over (any thread)."""
        with self._lock:
            self._items.append(item)
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            try:
                self._loop.call_soon_threadsafe(_wake, waiter)
            except RuntimeError:  # the loop is closed (shutdown): nobody is listening
                pass

    async def get(self) -> T:
        """The next item, once there is one (the loop's thread)."""
        while True:
            with self._lock:
                if self._items:
                    return self._items.popleft()
                waiter = self._waiter = self._loop.create_future()
            await waiter


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclass(frozen=True)
class Admitted:
    """The request has a slot or a place in the queue."""

    request_id: str
    model: str
    queue_position: int
    prompt_tokens: int


@dataclass(frozen=True)
class Usage:
    """Token counts and timings of one generation."""

    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int
    time_to_first_token_ms: int
    tokens_per_second: float
    queue_wait_ms: int


@dataclass(frozen=True)
class Completed:
    """The generation ended without an error."""

    reason: FinishReason
    stop_string: str
    usage: Usage
    text: str


GenerationEvent = Admitted | TokenOut | Completed


@dataclass(eq=False)
class ActiveRequest:
    """A queued or running request: its cancel flag and, while it waits, its reservation."""

    user_id: str
    request_id: str
    cancel: threading.Event = field(default_factory=threading.Event)
    model: GenerationModel | None = None
    reservation: Reservation[Slot] | None = None


class GenerationEngine:
    """Admits, runs and cancels generations; request ids are scoped per user."""

    def __init__(self, metrics: InferenceMetrics) -> None:
        self._metrics = metrics
        self._active: dict[tuple[str, str], ActiveRequest] = {}
        self.draining = False

    def cancel(self, user_id: str, request_id: str) -> bool:
        """Stop the caller's request ``request_id``; False when none is queued or running."""
        active = self._active.get((user_id, request_id))
        if active is None or active.cancel.is_set():
            return False
        active.cancel.set()
        if active.model is not None and active.reservation is not None:
            active.model.pool.withdraw(active.reservation)
        return True

    def _gauges(self, model: GenerationModel) -> None:
        self._metrics.queue_depth.labels(model.name).set(model.pool.queued)
        self._metrics.slots_busy.labels(model.name).set(model.pool.busy)

    def _release(self, model: GenerationModel, slot: Slot) -> None:
        model.pool.release(slot)
        self._gauges(model)

    async def generate(
        self,
        user_id: str,
        request_id: str,
        model: GenerationModel,
        tokens: list[int],
        sampling: Sampling,
        *,
        prompt_field: str,
        cache_key: str | None = None,
        arrived: float | None = None,
        next_turn: Callable[[str], list[int]] | None = None,
    ) -> AsyncIterator[GenerationEvent]:
        """Admit and run one generation: ``Admitted``, then ``TokenOut``s, then ``Completed``.

        Args:
            user_id: the caller (request ids are unique per user).
            request_id: the client's id, or empty for a server-assigned UUID.
            model: the model that generates.
            tokens: the prompt's tokens.
            sampling: the sampling parameters, defaults applied.
            prompt_field: the request field named when the prompt does not fit.
            cache_key: key of saved KV state to reuse and update (a conversation id).
            arrived: ``time.perf_counter()`` when the request arrived (default: now).
            next_turn: completion text -> the tokens the next turn's prompt will likely start
                with; the slot evaluates them after the reply, before saving the KV state.

        Raises:
            Draining, PromptTooLong, RequestIdInUse, UserQueueFull (the caller's own cap), QueueFull
            (the queue is full; also while waiting, when a user with a smaller share takes the place).
        """
        arrived = time.perf_counter() if arrived is None else arrived
        if self.draining:
            raise Draining()
        if len(tokens) >= model.n_ctx:
            raise PromptTooLong(prompt_field, len(tokens), model.n_ctx)
        request_id = request_id or str(uuid.uuid4())
        key = (user_id, request_id)
        if key in self._active:
            raise RequestIdInUse(request_id)
        active = self._active[key] = ActiveRequest(user_id, request_id, model=model)
        try:
            try:
                reservation = active.reservation = model.pool.reserve(user_id)
            except (QueueFull, UserQueueFull):
                self._metrics.rejected.labels(model.name).inc()
                raise
            self._gauges(model)
            yield Admitted(request_id, model.name, reservation.position, len(tokens))
            try:
                slot = await model.pool.wait(reservation)
            except QueueFull:  # evicted: a user with a smaller share needed the place
                self._metrics.rejected.labels(model.name).inc()
                self._gauges(model)
                raise
            active.reservation = None
            self._gauges(model)
            if slot is None or active.cancel.is_set():
                if slot is not None:
                    self._release(model, slot)
                yield self._completed_without_tokens(len(tokens), arrived)
                return
            queue_wait = time.perf_counter() - arrived
            job = Job(tokens, sampling, active.cancel, cache_key, next_turn)
            async for event in self._run(model, slot, job):
                if isinstance(event, TokenOut):
                    yield event
                else:
                    yield self._completed(model, event, len(tokens), arrived, queue_wait)
        finally:
            active.cancel.set()  # the caller went away (or it ended): stop the worker now
            self._active.pop(key, None)

    async def _run(self, model: GenerationModel, slot: Slot, job: Job) -> AsyncIterator[TokenOut | WorkDone]:
        loop = asyncio.get_running_loop()
        handover = HandOver[TokenOut | WorkDone | BaseException](loop)

        def work() -> None:
            try:
                handover.put(slot.run(job, handover.put))
            except BaseException as exc:  # noqa: BLE001 - re-raised on the loop, where the caller gets INTERNAL
                handover.put(exc)
            finally:
                try:
                    loop.call_soon_threadsafe(self._release, model, slot)
                except RuntimeError:  # the loop is closed (shutdown)
                    pass

        loop.run_in_executor(model.executor, work)
        while True:
            item = await handover.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if isinstance(item, WorkDone):
                return

    def _completed(
        self, model: GenerationModel, done: WorkDone, prompt_tokens: int, arrived: float, queue_wait: float
    ) -> Completed:
        ttft = (done.first_token_at - arrived) if done.first_token_at is not None else 0.0
        tps = 0.0
        if done.first_token_at is not None and done.last_token_at is not None and done.completion_tokens > 1:
            span = done.last_token_at - done.first_token_at
            tps = (done.completion_tokens - 1) / span if span > 0 else 0.0
        name = model.name
        self._metrics.completion_tokens.labels(name).inc(done.completion_tokens)
        self._metrics.prompt_tokens.labels(name).inc(prompt_tokens)
        self._metrics.cached_prompt_tokens.labels(name).inc(done.cached_prompt_tokens)
        if done.cached_prompt_tokens:
            self._metrics.cache_hits.labels(name).inc()
        if done.first_token_at is not None:
            self._metrics.time_to_first_token.labels(name).observe(ttft)
        if tps:
            self._metrics.tokens_per_second.labels(name).observe(tps)
        usage = Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=done.completion_tokens,
            cached_prompt_tokens=done.cached_prompt_tokens,
            time_to_first_token_ms=round(ttft * 1000),
            tokens_per_second=tps,
            queue_wait_ms=round(queue_wait * 1000),
        )
        return Completed(done.reason, done.stop_string, usage, done.text)

    @staticmethod
    def _completed_without_tokens(prompt_tokens: int, arrived: float) -> Completed:
        waited = round((time.perf_counter() - arrived) * 1000)
        return Completed(FinishReason.CANCELLED, "", Usage(prompt_tokens, 0, 0, 0, 0.0, waited), "")
