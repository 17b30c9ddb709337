"""What a GGUF file says about its model, read from its metadata without loading weights.

Uses the ``gguf`` package's reader (memory-mapped; only the keys asked for are decoded),
so ListModels can describe models that are not loaded and the chat template comes from
the file itself, exactly as the model's authors published it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf import GGUFReader

# llama.cpp's `general.file_type` (enum llama_ftype) -> quantisation name.
FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
}


@dataclass(frozen=True)
class GgufFacts:
    """The metadata chatmesh uses from one GGUF file."""

    architecture: str
    context_length: int
    embedding_length: int
    quantization: str
    chat_template: str
    bos_token: str
    eos_token: str
    size_bytes: int


def _value(reader: GGUFReader, key: str, index: int | None = None) -> Any:
    field = reader.get_field(key)
    if field is None:
        return None
    return field.contents() if index is None else field.contents(index)


def read_gguf(path: Path) -> GgufFacts:
    """Read ``path``'s metadata (blocking: file I/O; call it from a thread on a server).

    The reader parses every tensor and vocabulary entry (seconds for a large vocabulary), so
    facts are remembered per file version: servers built again in one process (tests) pay once.

    Raises:
        ValueError: the file is not a GGUF file.
    """
    stat = path.stat()
    return _read(path.resolve(), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _read(path: Path, mtime_ns: int, size: int) -> GgufFacts:
    reader = GGUFReader(path)
    architecture = str(_value(reader, "general.architecture") or "unknown")
    file_type = _value(reader, "general.file_type")
    bos_id = _value(reader, "tokenizer.ggml.bos_token_id")
    eos_id = _value(reader, "tokenizer.ggml.eos_token_id")
    bos = _value(reader, "tokenizer.ggml.tokens", int(bos_id)) if bos_id is not None else ""
    eos = _value(reader, "tokenizer.ggml.tokens", int(eos_id)) if eos_id is not None else ""
    return GgufFacts(
        architecture=architecture,
        context_length=int(_value(reader, f"{architecture}.context_length") or 0),
        embedding_length=int(_value(reader, f"{architecture}.embedding_length") or 0),
        quantization=FILE_TYPES.get(int(file_type), f"type-{file_type}") if file_type is not None else "unknown",
        chat_template=str(_value(reader, "tokenizer.chat_template") or ""),
        bos_token=str(bos or ""),
        eos_token=str(eos or ""),
        size_bytes=size,
    )
