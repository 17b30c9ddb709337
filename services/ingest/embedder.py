"""Embedding through the inference service (inference.Embed, ListModels), for a user.

The call acts for the user whose documents or query these are: with a service key this
process sends its own service token naming the user (``x-chatmesh-on-behalf-of``), so
inference applies its per-user queue to that user, also for a worker that has no token of
theirs; without one it forwards the caller's own token. Inference's answers pass through
as :mod:`services.runtime.peers` says, RESOURCE_EXHAUSTED with its ``retry-after-ms``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from chatmesh.inference.v1 import inference_pb2, inference_pb2_grpc
from services.runtime.channels import peer_channel
from services.runtime.errors import ChatmeshError, FailedPrecondition, NotFound, ResourceExhausted
from services.runtime.interceptors import ON_BEHALF_OF
from services.runtime.peers import relayed_error, retry_after_s
from services.runtime.tokens import ServiceTokenSigner

_MODELS_CACHE_S = 30.0


@dataclass(frozen=True)
class ModelFacts:
    """What ingest needs to know of an embedding model."""

    name: str
    dimensions: int


@dataclass(frozen=True)
class Embedded:
    """Vectors for a batch of texts, in order."""

    vectors: list[list[float]]
    dimensions: int
    prompt_tokens: int


@dataclass(frozen=True)
class Caller:
    """Who the embedding is for: the user, and their own ``authorization`` (forwarded without a service key)."""

    user_id: str
    authorization: str = ""


def _error(exc: grpc.aio.AioRpcError) -> ChatmeshError:
    if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
        retry_s = retry_after_s(exc)
        return ResourceExhausted(exc.details() or "inference is busy; retry", retry_s)
    return relayed_error(exc, "inference")


class InferenceEmbedder:
    """A client of inference's Embed and ListModels."""

    def __init__(self, target: str, timeout_s: float, signer: ServiceTokenSigner | None, batch_texts: int = 16) -> None:
        self._channel = peer_channel(target)
        self._stub = inference_pb2_grpc.InferenceServiceStub(self._channel)
        self._timeout_s = timeout_s
        self._signer = signer
        self._batch = batch_texts
        self._models: dict[str, ModelFacts] = {}
        self._default = ""
        self._unusable: set[str] = set()
        self._models_at = 0.0

    def _metadata(self, caller: Caller) -> tuple[tuple[str, str], ...]:
        if self._signer is not None:
            return (("authorization", f"Bearer {self._signer.token()}"), (ON_BEHALF_OF, caller.user_id))
        return (("authorization", caller.authorization),)

    async def model(self, caller: Caller, name: str) -> ModelFacts:
        """The embedding model ``name`` ("" for inference's default).

        Raises:
            NotFound: inference has no such model (names ``embedding_model``).
            FailedPrecondition: it cannot embed.
        """
        if time.monotonic() - self._models_at > _MODELS_CACHE_S or (name and name not in self._models):
            try:
                answer: inference_pb2.ListModelsResponse = await self._stub.ListModels(
                    inference_pb2.ListModelsRequest(), metadata=self._metadata(caller), timeout=self._timeout_s
                )
            except grpc.aio.AioRpcError as exc:
                raise _error(exc) from exc
            self._models = {m.name: ModelFacts(m.name, m.embedding_dimensions) for m in answer.models if m.can_embed}
            self._default = next((m.name for m in answer.models if m.default_for_embed), "")
            known = {m.name for m in answer.models}
            self._unusable = known - set(self._models)
            self._models_at = time.monotonic()
        wanted = name or self._default
        facts = self._models.get(wanted)
        if facts is None:
            if wanted in self._unusable:
                raise FailedPrecondition(f"embedding_model: {wanted!r} cannot embed (see inference ListModels)")
            raise NotFound(f"embedding_model: no model named {wanted!r} (see inference ListModels)")
        return facts

    async def embed(self, caller: Caller, model: str, texts: Sequence[str]) -> Embedded:
        """Vectors for ``texts`` (in Embed calls of at most ``batch_texts``), in order."""
        vectors: list[list[float]] = []
        dimensions = 0
        tokens = 0
        for start in range(0, len(texts), self._batch):
            try:
                answer: inference_pb2.EmbedResponse = await self._stub.Embed(
                    inference_pb2.EmbedRequest(texts=list(texts[start : start + self._batch]), model=model),
                    metadata=self._metadata(caller),
                    timeout=self._timeout_s,
                )
            except grpc.aio.AioRpcError as exc:
                raise _error(exc) from exc
            vectors.extend(list(e.values) for e in answer.embeddings)
            dimensions = answer.dimensions
            tokens += answer.prompt_tokens
        return Embedded(vectors, dimensions, tokens)

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()
