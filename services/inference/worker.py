"""One generation slot: a llama context of its own, driven from a worker thread.

Everything here blocks and runs off the event loop. A generation checks its cancel flag
after every token, so a cancel stops it within one token and the slot frees at once.
Before generating, the slot reuses the longest exact token prefix it can: the tokens its
own context already holds, or a saved per-conversation snapshot (``KvStateCache``).
"""

from __future__ import annotations

import ctypes
import enum
import logging
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
#: Most tokens evaluated ahead for the next turn; more means the guess went wrong somewhere.
MAX_AHEAD_TOKENS = 64

log = logging.getLogger("chatmesh.inference.worker")


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
    next_turn: Callable[[str], list[int]] | None = None
    """Completion text -> the tokens the next turn's prompt will likely start with (see ``Slot.run``)."""


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


class CpuShare:
    """The CPU threads one model's slots share.

    Each slot decodes with its own ``per_slot`` threads (what keeps every slot decoding at once
    from oversubscribing the cores). A prompt is one large batch, though, and a slot that
    starts one while other slots sit idle may take their threads too, up to ``prompt_max``:
    time to first token then falls with the machine's idle cores instead of staying at
    one slot's share. Counted when a job starts, so a slot that starts later gets what is
    left (at least its own share; for the length of one prompt, the cores can be
    oversubscribed by the difference).
    """

    def __init__(self, per_slot: int, prompt_max: int) -> None:
        self.per_slot = per_slot
        self.prompt_max = max(per_slot, prompt_max)
        self._lock = threading.Lock()
        self._taken = 0

    def take(self) -> int:
        """Start a job: the threads its prompt may use now. Pair with ``give_back``."""
        with self._lock:
            threads = max(self.per_slot, self.prompt_max - self._taken)
            self._taken += threads
            return threads

    def give_back(self, threads: int) -> None:
        """Return ``threads`` of what ``take`` gave (the extra after the prompt, the rest at the end)."""
        with self._lock:
            self._taken -= threads


class Slot:
    """A llama context (created on first use, in the worker thread) and its generation loop."""

    def __init__(
        self, index: int, factory: LlamaFactory, cache: KvStateCache | None, cpu: CpuShare | None = None
    ) -> None:
        self.index = index
        self._factory = factory
        self._cache = cache
        self._cpu = cpu
        self._batch_threads = 0  # what the context's n_threads_batch was last set to (0: as built)
        self._claim = 0  # threads this slot holds of ``cpu`` while it runs a job
        self._llama: Llama | None = None
        self._ends: dict[int, bool] = {}
        self._pieces: dict[int, bytes] = {}

    @property
    def loaded(self) -> bool:
        """True once the context exists."""
        return self._llama is not None

    def run(self, job: Job, emit: Callable[[TokenOut], None]) -> WorkDone:
        """Generate for ``job``, calling ``emit`` for each token (blocking; a worker thread).

        The decode loop is ``Llama.generate``'s (same sampler chain, same prefix reuse) with
        one difference that matters when the tokens are streamed: between handing a token
        over (which wakes the event loop) and the next ``llama_decode`` it runs only Python,
        with no call that lets go of the interpreter lock. The loop then does its per-token
        work (gRPC) while llama.cpp computes the next token, instead of this thread waiting
        for the lock after each of generate's small ctypes calls (up to the 5 ms switch
        interval each) before it may start decoding.
        """
        started = time.perf_counter()
        if self._llama is None:
            self._llama = self._factory()
        if self._cpu is None:
            return self._generate(self._llama, job, emit, started)
        self._claim = self._cpu.take()
        try:
            self._set_batch_threads(self._llama, self._claim)
            return self._generate(self._llama, job, emit, started)
        finally:
            self._cpu.give_back(self._claim)
            self._claim = 0

    def _prompt_done(self, llama: Llama) -> None:
        """Decoding from here on: keep the slot's own threads, give the borrowed ones back."""
        if self._cpu is not None and self._claim > self._cpu.per_slot:
            self._set_batch_threads(llama, self._cpu.per_slot)  # evaluating ahead, after the reply
            self._cpu.give_back(self._claim - self._cpu.per_slot)
            self._claim = self._cpu.per_slot

    def _set_batch_threads(self, llama: Llama, threads: int) -> None:
        """Prompt batches with ``threads`` threads (one-token decodes keep the slot's own)."""
        assert self._cpu is not None
        if threads != self._batch_threads:
            llama_cpp.llama_set_n_threads(llama._ctx.ctx, self._cpu.per_slot, threads)  # noqa: SLF001
            self._batch_threads = threads

    def _generate(self, llama: Llama, job: Job, emit: Callable[[TokenOut], None], started: float) -> WorkDone:
        cached = self._reuse_prefix(llama, job)
        sampling = job.sampling
        llama.set_seed(sampling.seed if sampling.seed is not None else random.getrandbits(31))
        # The chain Llama.generate builds (penalties, then greedy or top-k/typical/top-p/min-p/temp/dist).
        sampler = llama._init_sampler(  # noqa: SLF001 - the public API samples only inside generate
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            min_p=sampling.min_p,
            temp=sampling.temperature,
            repeat_penalty=sampling.repeat_penalty,
        )
        context = llama._ctx  # noqa: SLF001 - one-token decodes without eval's per-call KV trim
        batch = llama._batch  # noqa: SLF001
        text = CompletionText(sampling.stop)
        n_ctx = llama.n_ctx()
        count = 0
        first_at: float | None = None
        last_at: float | None = None
        reason = FinishReason.LENGTH
        try:
            llama.n_tokens = cached  # eval drops the KV cells from here on, then evaluates the rest
            llama.eval(job.tokens[cached:])
            self._prompt_done(llama)
            while True:
                token: int = sampler.sample(context, -1)
                if job.cancel.is_set():
                    reason = FinishReason.CANCELLED
                    break
                now = time.perf_counter()
                if self._is_end(llama, token):
                    reason = FinishReason.STOP
                    rest = text.flush()
                    if rest:  # held-back text rides on the end token, so no text is lost
                        emit(TokenOut(rest, token, count))
                        count += 1
                        last_at = now
                    break
                piece = text.add(self._piece(llama, token))
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
                batch.set_batch(batch=[token], n_past=llama.n_tokens, logits_all=False)
                context.decode(batch)
                llama.input_ids[llama.n_tokens] = token
                llama.n_tokens += 1
        finally:
            sampler.close()
        if reason is not FinishReason.CANCELLED and job.cache_key is not None and self._cache is not None:
            if job.next_turn is not None:
                self._evaluate_ahead(llama, job.next_turn, text.text)
            self._save(llama, job.cache_key)
        return WorkDone(reason, text.text, text.stop_string, count, cached, started, first_at, last_at)

    def _is_end(self, llama: Llama, token: int) -> bool:
        """Whether ``token`` ends a generation (EOS, EOT...), remembered per token id."""
        end = self._ends.get(token)
        if end is None:
            vocab = llama._model.vocab  # noqa: SLF001 - the public API has no is-end-of-generation check
            end = self._ends[token] = bool(llama_cpp.llama_vocab_is_eog(vocab, token))
        return end

    def _piece(self, llama: Llama, token: int) -> bytes:
        """The bytes of ``token``'s text (special tokens as empty text), remembered per token id."""
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = llama.detokenize([token])
        return piece

    def _reuse_prefix(self, llama: Llama, job: Job) -> int:
        """Bring the context to the longest saved prefix of ``job.tokens``; return the tokens reused.

        At most all but one: the last prompt token is evaluated again for fresh logits.
        """
        held = common_prefix(llama.input_ids[: llama.n_tokens].tolist(), job.tokens)
        if job.cache_key is not None and self._cache is not None:
            snapshot = self._cache.get(job.cache_key)
            if snapshot is not None and common_prefix(snapshot.tokens, job.tokens) > held:
                self._restore(llama, snapshot)
                held = common_prefix(snapshot.tokens, job.tokens)
        return max(0, min(held, len(job.tokens) - 1))

    @staticmethod
    def _evaluate_ahead(llama: Llama, next_turn: Callable[[str], list[int]], completion: str) -> None:
        """Evaluate the start of the next turn's prompt now, while the user reads the reply.

        The reply's last token (sampled, not yet evaluated) and the template's markup that
        closes the reply and opens the user's next message are the same whatever the user
        writes next; evaluated here, they are in the saved state, and the next turn
        evaluates only the new message. A wrong guess costs only reuse: prefixes match exactly.
        """
        try:
            ahead = next_turn(completion)
        except Exception:  # noqa: BLE001 - an optimisation: the reply itself is done and fine
            log.warning("next turn's prompt start not computed", exc_info=True)
            return
        held = common_prefix(llama.input_ids[: llama.n_tokens].tolist(), ahead)
        if not 0 < len(ahead) - held <= MAX_AHEAD_TOKENS or len(ahead) >= llama.n_ctx():
            return
        llama.n_tokens = held  # eval drops the KV cells from here on first
        llama.eval(ahead[held:])

    def _save(self, llama: Llama, key: str) -> None:
        assert self._cache is not None
        ctx = llama._ctx.ctx  # noqa: SLF001 - per-sequence state is only in the low-level API
        size = llama_cpp.llama_state_seq_get_size(ctx, SEQ)
        state = bytearray(size)  # llama.cpp writes straight into it: no copy of the ~25 MB
        buffer = (ctypes.c_uint8 * size).from_buffer(state)
        written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, SEQ)
        del buffer  # releases the export, so the bytearray may shrink
        del state[written:]
        tokens = tuple(llama.input_ids[: llama.n_tokens].tolist())
        self._cache.put(key, KvSnapshot(tokens, state))

    @staticmethod
    def _restore(llama: Llama, snapshot: KvSnapshot) -> None:
        # Llama.load_state would also copy n_batch x n_vocab logits per snapshot (100 MB for a
        # 49k vocabulary); the KV cells and the token ids are all that prefix reuse needs,
        # since generate re-evaluates at least one token before it samples. llama.cpp reads
        # the snapshot's own bytes (no copy); it never writes them.
        ctx = llama._ctx.ctx  # noqa: SLF001
        buffer = (ctypes.c_uint8 * len(snapshot.state)).from_buffer(snapshot.state)
        if llama_cpp.llama_state_seq_set_data(ctx, buffer, len(snapshot.state), SEQ) != len(snapshot.state):
            llama.reset()  # type: ignore[no-untyped-call]
            return
        n = len(snapshot.tokens)
        llama.input_ids[:n] = snapshot.tokens
        llama.n_tokens = n
        llama._requires_eval = True  # noqa: SLF001 - logits are not restored
