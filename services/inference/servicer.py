"""InferenceService: proto messages in, domain calls, proto messages out."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from chatmesh.inference.v1 import inference_pb2 as pb
from chatmesh.inference.v1 import inference_pb2_grpc
from services.inference.chat_template import ChatRole, ChatTurn
from services.inference.embedding import embed
from services.inference.engine import Admitted, Completed, GenerationEngine, Usage
from services.inference.grounding import Citation
from services.inference.models import ModelInfo, ModelRegistry
from services.inference.reply import Grounded, ReplyCompleted, ReplyRunner
from services.inference.worker import FinishReason, Sampling, TokenOut
from services.runtime.errors import InvalidArgument
from services.runtime.interceptors import Context, current_principal

_ROLES: dict[int, ChatRole] = {pb.ROLE_SYSTEM: "system", pb.ROLE_USER: "user", pb.ROLE_ASSISTANT: "assistant"}
_REASONS = {
    FinishReason.STOP: pb.FINISH_REASON_STOP,
    FinishReason.LENGTH: pb.FINISH_REASON_LENGTH,
    FinishReason.CANCELLED: pb.FINISH_REASON_CANCELLED,
}


def sampling_of(params: pb.SamplingParams, defaults: Sampling) -> Sampling:
    """The request's sampling with the model's defaults for every unset field (bounds: protovalidate)."""
    return Sampling(
        max_tokens=params.max_tokens if params.HasField("max_tokens") else defaults.max_tokens,
        temperature=params.temperature if params.HasField("temperature") else defaults.temperature,
        top_p=params.top_p if params.HasField("top_p") else defaults.top_p,
        top_k=params.top_k if params.HasField("top_k") else defaults.top_k,
        min_p=params.min_p if params.HasField("min_p") else defaults.min_p,
        repeat_penalty=params.repeat_penalty if params.HasField("repeat_penalty") else defaults.repeat_penalty,
        seed=params.seed if params.HasField("seed") else defaults.seed,
        stop=tuple(params.stop),
    )


def sampling_pb(sampling: Sampling) -> pb.SamplingParams:
    """A Sampling as the contract's SamplingParams (every field set but seed)."""
    return pb.SamplingParams(
        max_tokens=sampling.max_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k,
        min_p=sampling.min_p,
        repeat_penalty=sampling.repeat_penalty,
        stop=list(sampling.stop),
    )


def _usage_pb(usage: Usage) -> pb.Usage:
    return pb.Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_prompt_tokens=usage.cached_prompt_tokens,
        time_to_first_token_ms=usage.time_to_first_token_ms,
        tokens_per_second=usage.tokens_per_second,
        queue_wait_ms=usage.queue_wait_ms,
    )


def _started(event: Admitted) -> pb.Started:
    return pb.Started(
        request_id=event.request_id,
        model=event.model,
        queue_position=event.queue_position,
        prompt_tokens=event.prompt_tokens,
    )


def _token(event: TokenOut) -> pb.Token:
    return pb.Token(text=event.text, token_id=event.token_id, index=event.index)


def _finished(done: Completed, message_id: str = "") -> pb.Finished:
    return pb.Finished(
        reason=_REASONS[done.reason],
        usage=_usage_pb(done.usage),
        stop_string=done.stop_string,
        assistant_message_id=message_id,
    )


def _citations(event: Grounded) -> pb.Citations:
    return pb.Citations(citations=[_citation(c) for c in event.citations], collections=event.collections)


def _citation(c: Citation) -> pb.Citation:
    return pb.Citation(
        number=c.number, collection=c.collection, point_id=c.point_id, source=c.source, offset=c.offset,
        score=c.score, passage=c.passage,
    )  # fmt: skip


def _model_pb(info: ModelInfo) -> pb.Model:
    return pb.Model(
        name=info.name,
        family=info.facts.architecture,
        context_length=info.context_length,
        quantization=info.facts.quantization,
        loaded=info.loaded,
        can_generate=info.can_generate,
        can_embed=info.can_embed,
        embedding_dimensions=info.facts.embedding_length if info.can_embed else 0,
        default_for_generate=info.default_for_generate,
        default_for_embed=info.default_for_embed,
        size_bytes=info.facts.size_bytes,
        default_sampling=sampling_pb(info.default_sampling) if info.default_sampling is not None else None,
    )


def _credentials(context: Context) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            return value
    return ""


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    """Translates the contract to the engine, the reply runner and the registry."""

    def __init__(self, registry: ModelRegistry, engine: GenerationEngine, replies: ReplyRunner) -> None:
        self._registry = registry
        self._engine = engine
        self._replies = replies

    async def Generate(self, request: pb.GenerateRequest, context: Context) -> AsyncIterator[pb.GenerateResponse]:
        arrived = time.perf_counter()
        user_id = current_principal().user_id
        model = self._registry.generator(request.model)
        sampling = sampling_of(request.sampling, self._registry.default_sampling())
        if request.prompt:
            field = "prompt"
            tokens = await model.tokenize(request.prompt, add_bos=True)
        else:
            field = "messages"
            if model.template is None:
                raise InvalidArgument("messages", f"{model.name!r} has no chat template: send `prompt` instead")
            turns = [ChatTurn(_ROLES[m.role], m.content) for m in request.messages]
            rendered = model.template.render(turns)
            tokens = await model.tokenize(rendered.text, add_bos=not rendered.has_special_tokens)
        events = self._engine.generate(
            user_id, request.request_id, model, tokens, sampling, prompt_field=field, arrived=arrived
        )
        async for event in events:
            if isinstance(event, Admitted):
                yield pb.GenerateResponse(started=_started(event))
            elif isinstance(event, TokenOut):
                yield pb.GenerateResponse(token=_token(event))
            else:
                yield pb.GenerateResponse(finished=_finished(event))

    async def Reply(self, request: pb.ReplyRequest, context: Context) -> AsyncIterator[pb.ReplyResponse]:
        user_id = current_principal().user_id
        sampling = sampling_of(request.sampling, self._registry.default_sampling())
        events = self._replies.reply(
            user_id, _credentials(context), request.conversation_id, request.model, sampling, request.request_id,
            tuple(request.collections),
        )  # fmt: skip
        async for event in events:
            if isinstance(event, Admitted):
                yield pb.ReplyResponse(started=_started(event))
            elif isinstance(event, Grounded):
                yield pb.ReplyResponse(citations=_citations(event))
            elif isinstance(event, TokenOut):
                yield pb.ReplyResponse(token=_token(event))
            elif isinstance(event, ReplyCompleted):
                yield pb.ReplyResponse(finished=_finished(event.completed, event.message_id))

    async def Cancel(self, request: pb.CancelRequest, context: Context) -> pb.CancelResponse:
        return pb.CancelResponse(was_running=self._engine.cancel(current_principal().user_id, request.request_id))

    async def Embed(self, request: pb.EmbedRequest, context: Context) -> pb.EmbedResponse:
        model = self._registry.embedder(request.model)
        result = await embed(model, current_principal().user_id, list(request.texts))
        return pb.EmbedResponse(
            embeddings=[pb.Embedding(values=v) for v in result.vectors],
            dimensions=result.dimensions,
            model=result.model,
            prompt_tokens=result.prompt_tokens,
        )

    async def ListModels(self, request: pb.ListModelsRequest, context: Context) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[_model_pb(info) for info in self._registry.describe()])
