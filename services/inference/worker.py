"""One generation slot: a llama context of its own, driven from a worker thread.

Everything here blocks and runs off the event loop. A generation checks its cancel flag
after every token, so a cancel stops it within one token and the slot frees at once.
Before generating, the slot reuses the longest exact token prefix it can: the tokens its
own context already holds, or a saved per-conversation snapshot (``KvStateCache``).
"""

from __future__ import annotations

import ctypes
import enum
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import llama_cpp
from llama_cpp import Llama

from services.inference.kvstate import KvSnapshot, KvStateCache, common_prefix
from services.inference.text import CompletionText

SEQ = 0  # every slot uses one sequence of its own context


class FinishReason(enum.Enum):
    """Why a generation ended (mirrors the contract's FinishReason)."""

    STOP = "stop"
    LENGTH = "length"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters with every default applied."""

    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    min_p: float
    repeat_penalty: float
    seed: int | None
    stop: tuple[str, ...]


@dataclass
class Job:
    """One generation: the prompt's tokens, how to sample, and the flag that stops it."""

    tokens: list[int]
    sampling: Sampling
    cancel: threading.Event
    cache_key: str | None = None


@dataclass(frozen=True)
class TokenOut:
    """A generated token and the text it makes showable."""

    text: str
    token_id: int
    index: int


@dataclass(frozen=True)
class WorkDone:
    """How a generation ended."""

    reason: FinishReason
    text: str
    stop_string: str
    completion_tokens: int
    cached_prompt_tokens: int
    started_at: float
    first_token_at: float | None
    last_token_at: float | None


LlamaFactory = Callable[[], Llama]


class Slot:
    """A llama context (created on first use, in the worker thread) and its generation loop."""

    def __init__(self, index: int, factory: LlamaFactory, cache: KvStateCache | None) -> None:
        self.index = index
        self._factory = factory
        self._cache = cache
        self._llama: Llama | None = None

    @property
    def loaded(self) -> bool:
        """True once the context exists."""
        return self._llama is not None

    def run(self, job: Job, emit: Callable[[TokenOut], None]) -> WorkDone:
        """Generate for ``job``, calling ``emit`` for each token (blocking; a worker thread)."""
        started = time.perf_counter()
        if self._llama is None:
            self._llama = self._factory()
        llama = self._llama
        cached = self._reuse_prefix(llama, job)
        sampling = job.sampling
        llama.set_seed(sampling.seed if sampling.seed is not None else random.getrandbits(31))
        text = CompletionText(sampling.stop)
        n_ctx = llama.n_ctx()
        count = 0
        first_at: float | None = None
        last_at: float | None = None
        reason = FinishReason.LENGTH
        vocab = llama._model.vocab  # noqa: SLF001 - the public API has no is-end-of-generation check
        previous: list[int] = []
        for token in llama.generate(
            job.tokens,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            min_p=sampling.min_p,
            temp=sampling.temperature,
            repeat_penalty=sampling.repeat_penalty,
            reset=True,
        ):
            if job.cancel.is_set():
                reason = FinishReason.CANCELLED
                break
            now = time.perf_counter()
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                reason = FinishReason.STOP
                rest = text.flush()
                if rest:  # held-back text rides on the end token, so no text is lost
                    emit(TokenOut(rest, token, count))
                    count += 1
                    last_at = now
                break
            piece = text.add(llama.detokenize([token], prev_tokens=previous))
            previous.append(token)
            first_at = first_at or now
            last_at = now
            last = bool(text.stop_string) or count + 1 >= sampling.max_tokens or llama.n_tokens + 1 >= n_ctx
            if last and not text.stop_string:
                piece += text.flush()
            emit(TokenOut(piece, token, count))
            count += 1
            if text.stop_string:
                reason = FinishReason.STOP
                break
            if last:
                reason = FinishReason.LENGTH
                break
        if reason is not FinishReason.CANCELLED and job.cache_key is not None and self._cache is not None:
            self._save(llama, job.cache_key)
        return WorkDone(reason, text.text, text.stop_string, count, cached, started, first_at, last_at)

    def _reuse_prefix(self, llama: Llama, job: Job) -> int:
        """Bring the context to the longest saved prefix of ``job.tokens``; return the tokens reused."""
        held = common_prefix(llama.input_ids[: llama.n_tokens].tolist(), job.tokens)
        if job.cache_key is not None and self._cache is not None:
            snapshot = self._cache.get(job.cache_key)
            if snapshot is not None and common_prefix(snapshot.tokens, job.tokens) > held:
                self._restore(llama, snapshot)
                held = common_prefix(snapshot.tokens, job.tokens)
        # llama.generate replays one token when the whole prompt is cached (fresh logits).
        return min(held, len(job.tokens) - 1)

    def _save(self, llama: Llama, key: str) -> None:
        assert self._cache is not None
        ctx = llama._ctx.ctx  # noqa: SLF001 - per-sequence state is only in the low-level API
        size = llama_cpp.llama_state_seq_get_size(ctx, SEQ)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, SEQ)
        tokens = tuple(llama.input_ids[: llama.n_tokens].tolist())
        self._cache.put(key, KvSnapshot(tokens, bytes(buffer)[:written]))

    @staticmethod
    def _restore(llama: Llama, snapshot: KvSnapshot) -> None:
        # Llama.load_state would also copy n_batch x n_vocab logits per snapshot (100 MB for a
        # 49k vocabulary); the KV cells and the token ids are all that prefix reuse needs,
        # since generate re-evaluates at least one token before it samples.
        ctx = llama._ctx.ctx  # noqa: SLF001
        buffer = (ctypes.c_uint8 * len(snapshot.state)).from_buffer_copy(snapshot.state)
        if llama_cpp.llama_state_seq_set_data(ctx, buffer, len(snapshot.state), SEQ) != len(snapshot.state):
            llama.reset()  # type: ignore[no-untyped-call]
            return
        n = len(snapshot.tokens)
        llama.input_ids[:n] = snapshot.tokens
        llama.n_tokens = n
        llama._requires_eval = True  # noqa: SLF001 - logits are not restored
