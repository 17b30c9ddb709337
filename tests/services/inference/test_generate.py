"""Generate on the bundled SmolLM2 model (streaming, validation, model lookup, cancelling, the queue); Embed on
all-MiniLM-L6-v2 by default and on the chat model by name; ListModels."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
import pytest

from chatmesh.inference.v1 import inference_pb2 as pb
from tests.services.inference.conftest import GREEDY, Caller

CHAT = [pb.ChatMessage(role=pb.ROLE_USER, content="Name a colour.")]


async def rest_of(call: grpc.aio.UnaryStreamCall) -> list[pb.GenerateResponse]:  # type: ignore[type-arg]
    """Read a stream already read with ``read()`` to its end."""
    chunks = []
    while (chunk := await call.read()) is not grpc.aio.EOF:
        chunks.append(chunk)
    return chunks


async def test_generate_streams_started_then_tokens_then_finished(make_caller: Callable[[], Caller]) -> None:
    caller = make_caller()
    chunks = [
        c async for c in caller.stub.Generate(pb.GenerateRequest(messages=CHAT, sampling=GREEDY), metadata=caller.auth)
    ]
    kinds = [c.WhichOneof("chunk") for c in chunks]
    assert kinds[0] == "started" and kinds[-1] == "finished"
    tokens = [c.token for c in chunks if c.HasField("token")]
    assert 1 <= len(tokens) <= 4
    assert [t.index for t in tokens] == list(range(len(tokens)))
    started, finished = chunks[0].started, chunks[-1].finished
    assert started.request_id and started.model == "smollm2-135m-instruct-q4_1" and started.prompt_tokens > 5
    assert finished.reason in (pb.FINISH_REASON_LENGTH, pb.FINISH_REASON_STOP)
    assert finished.usage.completion_tokens == len(tokens)
    assert finished.usage.prompt_tokens == started.prompt_tokens
    assert "".join(t.text for t in tokens).strip()


async def test_out_of_range_sampling_is_invalid_argument_naming_the_field(make_caller: Callable[[], Caller]) -> None:
    caller = make_caller()
    request = pb.GenerateRequest(prompt="Hi", sampling=pb.SamplingParams(top_p=1.5))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in caller.stub.Generate(request, metadata=caller.auth):
            pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sampling.top_p" in (info.value.details() or "")


async def test_unknown_model_is_not_found_naming_model(make_caller: Callable[[], Caller]) -> None:
    caller = make_caller()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in caller.stub.Generate(pb.GenerateRequest(prompt="Hi", model="gpt-9"), metadata=caller.auth):
            pass
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert (info.value.details() or "").startswith("model:")


async def test_cancelling_mid_stream_frees_the_slot_for_the_queued_request(make_caller: Callable[[], Caller]) -> None:
    first, second = make_caller(), make_caller()
    long = pb.SamplingParams(temperature=0, max_tokens=2000, seed=1)
    call = first.stub.Generate(pb.GenerateRequest(prompt="Once upon a time", sampling=long), metadata=first.auth)
    assert (await call.read()).HasField("started")
    assert (await call.read()).HasField("token")
    queued = second.stub.Generate(pb.GenerateRequest(messages=CHAT, sampling=GREEDY), metadata=second.auth)
    started = (await queued.read()).started
    assert started.queue_position == 1
    call.cancel()
    rest = await rest_of(queued)
    assert rest[-1].finished.usage.completion_tokens >= 1
    # The queued one waited only for the cancel, not for 2,000 tokens.
    assert rest[-1].finished.usage.queue_wait_ms < 20_000


async def test_a_full_queue_answers_resource_exhausted_with_retry_after(make_caller: Callable[[], Caller]) -> None:
    caller = make_caller()
    long = pb.SamplingParams(temperature=0, max_tokens=2000, seed=1)
    running = caller.stub.Generate(pb.GenerateRequest(prompt="Once", sampling=long), metadata=caller.auth)
    await running.read()
    waiting = caller.stub.Generate(pb.GenerateRequest(prompt="Twice", sampling=long), metadata=caller.auth)
    assert (await waiting.read()).started.queue_position == 1
    refused = caller.stub.Generate(pb.GenerateRequest(prompt="Thrice", sampling=long), metadata=caller.auth)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await refused.read()
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailing = dict(info.value.trailing_metadata() or ())
    assert int(trailing["retry-after-ms"]) > 0
    running.cancel()
    waiting.cancel()


async def test_cancel_by_request_id_ends_the_stream_with_finished_cancelled(make_caller: Callable[[], Caller]) -> None:
    caller, stranger = make_caller(), make_caller()
    long = pb.SamplingParams(temperature=0, max_tokens=2000, seed=1)
    call = caller.stub.Generate(
        pb.GenerateRequest(prompt="Once upon a time", sampling=long, request_id="story-1"), metadata=caller.auth
    )
    await call.read()
    await call.read()
    other = await stranger.stub.Cancel(pb.CancelRequest(request_id="story-1"), metadata=stranger.auth)
    assert not other.was_running  # another user's id names nothing of theirs
    mine = await caller.stub.Cancel(pb.CancelRequest(request_id="story-1"), metadata=caller.auth)
    assert mine.was_running
    rest = await rest_of(call)
    assert rest[-1].finished.reason == pb.FINISH_REASON_CANCELLED
    assert rest[-1].finished.usage.completion_tokens < 2000
    assert await call.code() == grpc.StatusCode.OK
    again = await caller.stub.Cancel(pb.CancelRequest(request_id="story-1"), metadata=caller.auth)
    assert not again.was_running


def cosine(a: pb.Embedding, b: pb.Embedding) -> float:
    """Cosine of two unit vectors: their dot product."""
    return sum(x * y for x, y in zip(a.values, b.values, strict=True))


async def test_embed_returns_unit_vectors_of_minilm_by_default(make_caller: Callable[[], Caller]) -> None:
    caller = make_caller()
    texts = ["a cat sleeps on the sofa", "a dog naps on the couch", "the tax law changed in April"]
    reply = await caller.stub.Embed(pb.EmbedRequest(texts=texts), metadata=caller.auth)
    assert reply.model == "all-minilm-l6-v2"
    assert reply.dimensions == 384 and len(reply.embeddings) == 3
    for embedding in reply.embeddings:
        assert len(embedding.values) == 384
        assert sum(v * v for v in embedding.values) == pytest.approx(1.0, abs=1e-4)
    cat, dog, tax = reply.embeddings
    assert cosine(cat, dog) > cosine(cat, tax) + 0.3  # a sentence model: the pets are near, the law is far


async def test_embed_by_name_runs_the_chat_model_with_its_own_dimension(make_caller: Callable[[], Caller]) -> None:
    caller = make_caller()
    reply = await caller.stub.Embed(
        pb.EmbedRequest(texts=["a cat", "tax law"], model="smollm2-135m-instruct-q4_1"), metadata=caller.auth
    )
    assert (reply.model, reply.dimensions) == ("smollm2-135m-instruct-q4_1", 576)
    assert all(sum(v * v for v in e.values) == pytest.approx(1.0, abs=1e-4) for e in reply.embeddings)


async def test_a_text_longer_than_minilm_context_is_invalid_argument_naming_it(
    make_caller: Callable[[], Caller],
) -> None:
    caller = make_caller()
    texts = ["short", "word " * 1000]  # about 1,000 tokens: MiniLM has 512 positions
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await caller.stub.Embed(pb.EmbedRequest(texts=texts), metadata=caller.auth)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("texts[1]")


async def test_the_embedding_model_cannot_generate(make_caller: Callable[[], Caller]) -> None:
    caller = make_caller()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await caller.stub.Generate(
            pb.GenerateRequest(messages=CHAT, sampling=GREEDY, model="all-minilm-l6-v2"), metadata=caller.auth
        ).read()
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (err.value.details() or "").startswith("model:")


async def test_list_models_shows_the_chat_model_and_the_embedding_model(make_caller: Callable[[], Caller]) -> None:
    caller = make_caller()
    models = (await caller.stub.ListModels(pb.ListModelsRequest(), metadata=caller.auth)).models
    assert [m.name for m in models] == ["all-minilm-l6-v2", "smollm2-135m-instruct-q4_1"]
    minilm, chat = models
    assert chat.family == "llama" and chat.quantization == "Q4_1" and chat.context_length == 1024
    assert chat.can_generate and chat.can_embed and chat.embedding_dimensions == 576
    assert chat.default_for_generate and not chat.default_for_embed and chat.size_bytes > 50_000_000
    assert chat.default_sampling.HasField("max_tokens")
    assert minilm.family == "bert" and minilm.quantization == "F32" and minilm.context_length == 512
    assert not minilm.can_generate and minilm.can_embed and minilm.embedding_dimensions == 384
    assert minilm.default_for_embed and not minilm.default_for_generate and not minilm.HasField("default_sampling")


async def test_concurrent_generations_do_not_block_the_event_loop(make_caller: Callable[[], Caller]) -> None:
    caller = make_caller()
    call = caller.stub.Generate(pb.GenerateRequest(messages=CHAT, sampling=GREEDY), metadata=caller.auth)
    listed = await asyncio.wait_for(caller.stub.ListModels(pb.ListModelsRequest(), metadata=caller.auth), 2)
    assert listed.models
    assert [c async for c in call][-1].HasField("finished")
