"""A slot samples exactly what llama-cpp-python's own generate samples, and reuses KV state by exact prefix."""

from __future__ import annotations

import threading

import pytest
from llama_cpp import Llama

from services.inference.kvstate import KvStateCache
from services.inference.settings import bundled_model_path
from services.inference.worker import CpuShare, FinishReason, Job, Sampling, Slot, TokenOut


def bundled() -> Llama:
    return Llama(str(bundled_model_path()), n_ctx=512, n_threads=1, n_threads_batch=1, verbose=False)


@pytest.fixture(scope="module")
def reference() -> Llama:
    return bundled()


@pytest.mark.parametrize(("temperature", "seed", "repeat_penalty"), [(0.0, 1, 1.0), (0.8, 5, 1.1), (1.2, 42, 1.3)])
def test_a_slot_samples_the_tokens_llama_generate_samples(
    reference: Llama, temperature: float, seed: int, repeat_penalty: float
) -> None:
    prompt = reference.tokenize(b"Once upon a time", add_bos=True, special=True)
    reference.set_seed(seed)
    expected: list[int] = []
    for token in reference.generate(
        prompt, top_k=40, top_p=0.95, min_p=0.05, temp=temperature, repeat_penalty=repeat_penalty, reset=True
    ):
        expected.append(token)
        if len(expected) == 24:
            break
    tokens: list[TokenOut] = []
    sampling = Sampling(24, temperature, 0.95, 40, 0.05, repeat_penalty, seed, ())
    done = Slot(0, bundled, None).run(Job(prompt, sampling, threading.Event()), tokens.append)
    assert [t.token_id for t in tokens] == expected
    assert done.reason is FinishReason.LENGTH and done.completion_tokens == 24
    assert "".join(t.text for t in tokens) == reference.detokenize(expected).decode()


def test_a_restored_conversation_generates_what_a_cold_context_generates(reference: Llama) -> None:
    greedy = Sampling(12, 0.0, 0.95, 40, 0.05, 1.0, 1, ())
    first = reference.tokenize(b"<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n", False, True)
    slot = Slot(0, bundled, KvStateCache(64 << 20))
    slot.run(Job(first, greedy, threading.Event(), "c"), lambda _: None)
    slot.run(Job(first[:5], greedy, threading.Event(), "other"), lambda _: None)  # the context now holds another
    second = first + reference.tokenize(b"Red.<|im_end|>\n<|im_start|>user\nOne more?<|im_end|>\n", False, True)
    warm: list[TokenOut] = []
    done = slot.run(Job(second, greedy, threading.Event(), "c"), warm.append)
    assert done.cached_prompt_tokens >= len(first)
    cold: list[TokenOut] = []
    Slot(1, bundled, None).run(Job(second, greedy, threading.Event()), cold.append)
    assert [t.token_id for t in warm] == [t.token_id for t in cold]


def test_a_prompt_borrows_the_threads_of_idle_slots_and_gives_them_back_for_decoding() -> None:
    cpu = CpuShare(per_slot=2, prompt_max=8)
    first = cpu.take()
    assert first == 8  # alone: every prompt thread
    second = cpu.take()
    assert second == 2  # the first holds them: its own share only
    cpu.give_back(first - 2)  # the first's prompt is done: it decodes with its own share
    third = cpu.take()
    assert third == 4  # what the two decoding slots leave
    for threads in (2, second, third):
        cpu.give_back(threads)
    assert cpu.take() == 8


def test_a_slot_with_borrowed_prompt_threads_generates_what_one_thread_generates(reference: Llama) -> None:
    prompt = reference.tokenize(b"<|im_start|>user\nName three rivers.<|im_end|>\n<|im_start|>assistant\n", False, True)
    greedy = Sampling(16, 0.0, 0.95, 40, 0.05, 1.0, 1, ())
    alone: list[TokenOut] = []
    cpu = CpuShare(per_slot=1, prompt_max=2)
    slot = Slot(0, bundled, None, cpu)
    slot.run(Job(prompt, greedy, threading.Event()), alone.append)
    assert cpu.take() == 2  # the slot gave every thread back
    plain: list[TokenOut] = []
    Slot(1, bundled, None).run(Job(prompt, greedy, threading.Event()), plain.append)
    assert [t.token_id for t in alone] == [t.token_id for t in plain]
