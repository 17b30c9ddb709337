"""Loading models from several threads at once leaves the process's stdout and stderr alone."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import llama_cpp
import pytest
from llama_cpp import Llama

from services.inference import models
from services.inference.gguf_meta import read_gguf
from services.inference.models import open_llama
from services.inference.settings import InferenceSettings, bundled_model_path
from services.inference.worker import Job, Sampling


def _stdio() -> list[tuple[int, int]]:
    return [(os.fstat(fd).st_dev, os.fstat(fd).st_ino) for fd in (1, 2)]


def test_concurrent_loads_leave_stdout_and_stderr_where_they_were() -> None:
    # llama-cpp-python points fds 1 and 2 at /dev/null while it loads; unserialized loads in
    # several threads (two slots and the tokenizer, say) can leave them there, and the
    # service's logs would go nowhere.
    before = _stdio()
    start = threading.Barrier(6)

    def load() -> None:
        start.wait()
        for _ in range(4):
            open_llama(bundled_model_path(), vocab_only=True).close()

    threads = [threading.Thread(target=load) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _stdio() == before


def test_a_model_that_cannot_have_a_q8_0_key_cache_gets_f16_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    # llama.cpp refuses a quantized key cache when a head's size is not a multiple of its block
    # (32); such a model still serves, with llama.cpp's default f16 keys.
    asked: list[int] = []
    real = models.open_llama

    def refuses_q8(path: Path, **options: Any) -> Llama:
        asked.append(options["type_k"])
        if options["type_k"] == llama_cpp.GGML_TYPE_Q8_0:
            raise ValueError("Failed to create llama_context")
        return real(path, **options)

    monkeypatch.setattr(models, "open_llama", refuses_q8)
    settings = InferenceSettings(n_ctx=256, slots=1)
    assert settings.kv_type_k == "q8_0"
    path = bundled_model_path()
    model = models.GenerationModel("m", path, read_gguf(path), settings)
    slot = model.slots[0]
    done = slot.run(Job([1, 2, 3], Sampling(2, 0.0, 1.0, 1, 0.0, 1.0, 1, ()), threading.Event()), lambda _: None)
    assert done.completion_tokens >= 1
    assert asked == [llama_cpp.GGML_TYPE_Q8_0, llama_cpp.GGML_TYPE_F16]
