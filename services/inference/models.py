"""The model registry: each configured GGUF file, its facts, its slots and its tokenizer.

Chat models (``models``) generate and can embed; embedding-only models
(``embedding_models``, the converted all-MiniLM-L6-v2 by default) only embed. Weights load
lazily (a slot's context on its first generation, a model's embedding instance on its
first Embed), always in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp
from llama_cpp import Llama

from services.inference.chat_template import ChatTemplate
from services.inference.errors import ModelCannotGenerate, UnknownModel
from services.inference.gguf_meta import GgufFacts, read_gguf
from services.inference.kvstate import KvStateCache
from services.inference.prompt_tokens import PieceTokenizer, SpecialToken
from services.inference.settings import InferenceSettings
from services.inference.slots import SlotPool
from services.inference.worker import CpuShare, Sampling, Slot

#: llama-cpp-python silences llama.cpp while it loads a model by pointing the process's
#: file descriptors 1 and 2 at /dev/null and back. Two loads at once (two slots, the
#: tokenizer, the embedder) can interleave so that 1 and 2 stay on /dev/null: the
#: service's logs would vanish. Every load here takes this lock.
_LOAD_LOCK = threading.Lock()

log = logging.getLogger("chatmesh.inference.models")


def open_llama(path: Path, **options: Any) -> Llama:
    """``Llama(path, verbose=False, **options)``, one load at a time in this process (blocking)."""
    with _LOAD_LOCK:
        return Llama(str(path), verbose=False, **options)


_KV_TYPES = {"f16": llama_cpp.GGML_TYPE_F16, "q8_0": llama_cpp.GGML_TYPE_Q8_0}


def context_options(settings: InferenceSettings) -> dict[str, Any]:
    """The ``Llama`` options of a generation slot's context (also what the benchmark's baseline uses)."""
    return {
        "n_ctx": settings.n_ctx,
        "n_batch": settings.n_batch,
        "n_threads": settings.n_threads,
        "n_threads_batch": settings.n_threads,
        "n_gpu_layers": settings.n_gpu_layers,
        "type_k": _KV_TYPES[settings.kv_type_k],
    }


@dataclass(frozen=True)
class ModelInfo:
    """What ListModels says about one model."""

    name: str
    facts: GgufFacts
    context_length: int
    loaded: bool
    can_generate: bool
    can_embed: bool
    default_for_generate: bool
    default_for_embed: bool
    default_sampling: Sampling | None


class Tokenizer:
    """A vocabulary-only llama instance (no weights), loaded on first use."""

    def __init__(self, path: Path, piece_cache_chars: int) -> None:
        self._path = path
        self._piece_cache_chars = piece_cache_chars
        self._llama: Llama | None = None
        self._pieces: PieceTokenizer | None = None
        self._lock = threading.Lock()
        self._pieces_lock = threading.Lock()

    def _vocab(self) -> Llama:
        with self._lock:
            if self._llama is None:
                self._llama = open_llama(self._path, vocab_only=True)
            return self._llama

    def tokenize(self, text: str, add_bos: bool) -> list[int]:
        """Token ids of ``text`` (special tokens like ``<|im_start|>`` parsed); blocking."""
        return list(self._vocab().tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    @property
    def pieces(self) -> PieceTokenizer:
        """The same tokenizer, piece by piece with a cache (for prompts that grow turn by turn); blocking."""
        if self._pieces is None:
            with self._pieces_lock:  # the vocabulary walk happens once (``_lock`` guards ``_vocab``)
                if self._pieces is None:
                    specials = special_tokens(self._vocab())
                    self._pieces = PieceTokenizer(self.tokenize, specials, self._piece_cache_chars)
        return self._pieces


def special_tokens(llama: Llama) -> list[SpecialToken]:
    """The tokens llama.cpp cuts a text at before tokenizing it (control, user-defined, unknown)."""
    vocab = llama._model.vocab  # noqa: SLF001 - token attributes are only in the low-level API
    cut = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
    cut |= llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
    specials = []
    for token in range(llama_cpp.llama_vocab_n_tokens(vocab)):
        attr = llama_cpp.llama_vocab_get_attr(vocab, token)
        if attr & cut:
            text = (llama_cpp.llama_vocab_get_text(vocab, token) or b"").decode("utf-8", errors="replace")
            specials.append(SpecialToken(text, bool(attr & llama_cpp.LLAMA_TOKEN_ATTR_LSTRIP)))
    return specials


class GenerationModel:
    """A model that generates: its slot pool (one llama context a slot) and its threads."""

    def __init__(self, name: str, path: Path, facts: GgufFacts, settings: InferenceSettings) -> None:
        self.name = name
        self.facts = facts
        self.template = ChatTemplate.from_gguf(facts)
        self.n_ctx = settings.n_ctx
        self.tokenizer = Tokenizer(path, settings.prompt_cache_chars)
        self.kv_cache = KvStateCache(settings.kv_cache_bytes)

        def factory() -> Llama:
            options = context_options(settings)
            try:
                return open_llama(path, **options)
            except ValueError:  # llama-cpp-python: "Failed to create llama_context"
                if options["type_k"] == llama_cpp.GGML_TYPE_F16:
                    raise
                # A quantized key cache needs head sizes that are a multiple of its block (32).
                log.warning("model %s: no %s key cache for it, using f16", name, settings.kv_type_k)
                return open_llama(path, **(options | {"type_k": llama_cpp.GGML_TYPE_F16}))

        cpu = CpuShare(settings.n_threads, settings.prompt_threads)
        self.slots = [Slot(i, factory, self.kv_cache, cpu) for i in range(settings.slots)]
        self.pool: SlotPool[Slot] = SlotPool(
            self.slots,
            settings.queue_size,
            settings.retry_after_s,
            max_slots_per_user=settings.max_slots_per_user,
            max_queued_per_user=settings.max_queued_per_user,
        )
        self.executor = ThreadPoolExecutor(max_workers=settings.slots, thread_name_prefix=f"gen-{name}")

    @property
    def loaded(self) -> bool:
        """True when a slot holds the weights."""
        return any(slot.loaded for slot in self.slots)

    async def tokenize(self, text: str, add_bos: bool) -> list[int]:
        """Tokenize off the event loop."""
        return await asyncio.to_thread(self.tokenizer.tokenize, text, add_bos)


class EmbeddingModel:
    """A model run with ``embedding=True``: one llama instance apart from the slots, one batch at a time.

    Its context is the settings' ``n_ctx``, or the model's own trained context when that is
    shorter (a BERT encoder has position embeddings for 512 tokens and no more).
    """

    def __init__(self, name: str, path: Path, facts: GgufFacts, settings: InferenceSettings) -> None:
        self.name = name
        self.facts = facts
        trained = facts.context_length
        self.n_ctx = min(settings.n_ctx, trained) if trained > 0 else settings.n_ctx
        self._path = path
        self._settings = settings
        self._llama: Llama | None = None
        self.pool: SlotPool[int] = SlotPool(
            [0], settings.embed_queue_size, settings.retry_after_s, max_queued_per_user=settings.embed_queued_per_user
        )
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"embed-{name}")

    @property
    def loaded(self) -> bool:
        """True once the instance exists."""
        return self._llama is not None

    def llama(self) -> Llama:
        """The embedding instance (created on first use; call from the executor's thread)."""
        if self._llama is None:
            s = self._settings
            self._llama = open_llama(
                self._path,
                embedding=True,
                n_ctx=self.n_ctx,
                n_batch=self.n_ctx,  # a whole text goes in one batch (pooled embeddings need it)
                n_ubatch=self.n_ctx,
                n_threads=s.n_threads,
                n_threads_batch=s.n_threads,
                n_gpu_layers=s.n_gpu_layers,
            )
        return self._llama


class ModelRegistry:
    """Every configured model by name."""

    def __init__(
        self,
        settings: InferenceSettings,
        facts: dict[str, GgufFacts],
    ) -> None:
        self._settings = settings
        self.default_model = settings.default_model
        self.default_embedding = settings.embedding_model
        self._facts = facts
        self._generators = {
            name: GenerationModel(name, path, facts[name], settings) for name, path in settings.models.items()
        }
        every = settings.models | settings.embedding_models
        self._embedders = {name: EmbeddingModel(name, path, facts[name], settings) for name, path in every.items()}

    @classmethod
    async def load(cls, settings: InferenceSettings) -> ModelRegistry:
        """Read every model's GGUF metadata (in a thread) and build the registry."""
        every = settings.models | settings.embedding_models
        facts = {name: await asyncio.to_thread(read_gguf, path) for name, path in every.items()}
        return cls(settings, facts)

    def generator(self, name: str) -> GenerationModel:
        """The generation model ``name`` (empty: the default).

        Raises:
            UnknownModel: no such model.
            ModelCannotGenerate: it is embedding-only.
        """
        name = name or self.default_model
        model = self._generators.get(name)
        if model is None:
            if name in self._embedders:
                raise ModelCannotGenerate(name)
            raise UnknownModel(name)
        return model

    def embedder(self, name: str) -> EmbeddingModel:
        """The embedding model ``name`` (empty: the default embedding model).

        Every configured model embeds: an embedding model as it is, a chat model through the
        PromptEOL template (services/inference/embedding.py).

        Raises:
            UnknownModel: no such model.
        """
        name = name or self.default_embedding
        model = self._embedders.get(name)
        if model is None:
            raise UnknownModel(name)
        return model

    def default_sampling(self) -> Sampling:
        """The sampling defaults from the settings."""
        s = self._settings
        return Sampling(
            max_tokens=s.max_tokens_default,
            temperature=s.temperature_default,
            top_p=s.top_p_default,
            top_k=s.top_k_default,
            min_p=s.min_p_default,
            repeat_penalty=s.repeat_penalty_default,
            seed=None,
            stop=(),
        )

    def describe(self) -> list[ModelInfo]:
        """Every model, by name."""
        infos = []
        for name in sorted(self._facts):
            generator = self._generators.get(name)
            embedder = self._embedders.get(name)
            infos.append(
                ModelInfo(
                    name=name,
                    facts=self._facts[name],
                    context_length=embedder.n_ctx if generator is None and embedder else self._settings.n_ctx,
                    loaded=bool((generator and generator.loaded) or (embedder and embedder.loaded)),
                    can_generate=generator is not None,
                    can_embed=embedder is not None,
                    default_for_generate=name == self.default_model,
                    default_for_embed=name == self.default_embedding,
                    default_sampling=self.default_sampling() if generator is not None else None,
                )
            )
        return infos

    def close(self) -> None:
        """Stop the worker threads (running generations finish their current token first)."""
        for model in self._generators.values():
            model.executor.shutdown(wait=False, cancel_futures=True)
        for embedder in self._embedders.values():
            embedder.executor.shutdown(wait=False, cancel_futures=True)
