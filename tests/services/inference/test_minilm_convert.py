"""The all-MiniLM-L6-v2 conversion: what the GGUF file says, that it runs once, and the setting that needs it."""

from __future__ import annotations

from pathlib import Path

import pytest
from gguf import GGUFReader
from pydantic import ValidationError

from services.inference import minilm
from services.inference.gguf_meta import read_gguf
from services.inference.settings import InferenceSettings


def field(reader: GGUFReader, key: str, index: int | None = None) -> object:
    found = reader.get_field(key)
    assert found is not None, key
    return found.contents() if index is None else found.contents(index)


def test_the_file_is_a_bert_encoder_with_mean_pooling_and_the_wordpiece_vocabulary(tmp_path: Path) -> None:
    out = tmp_path / "minilm.gguf"
    minilm.convert(minilm.package_zip(), out)
    facts = read_gguf(out)
    assert (facts.architecture, facts.context_length, facts.embedding_length) == ("bert", 512, 384)
    assert facts.quantization == "F32" and facts.bos_token == "[CLS]"
    reader = GGUFReader(out)
    assert field(reader, "bert.pooling_type") == 1  # MEAN, as 1_Pooling/config.json says
    assert field(reader, "bert.attention.causal") is False
    assert (field(reader, "bert.block_count"), field(reader, "bert.attention.head_count")) == (6, 12)
    assert field(reader, "tokenizer.ggml.model") == "bert"
    tokens = reader.get_field("tokenizer.ggml.tokens")
    assert tokens is not None and len(tokens.data) == 30522
    # Phantom-space WordPiece: "the" starts a word, "##s" continues one, specials stay as they are.
    pieces = [field(reader, "tokenizer.ggml.tokens", i) for i in (101, 102, 1996, 2015)]
    assert pieces == ["[CLS]", "[SEP]", "▁the", "s"]
    assert field(reader, "tokenizer.ggml.token_type", 100) == 3  # [UNK] is a control token
    names = {tensor.name for tensor in reader.tensors}
    assert len(names) == 5 + 6 * 16  # embeddings (3 + norm), 16 per block; no pooler, no position ids
    assert {"token_embd.weight", "position_embd.weight", "blk.5.layer_output_norm.bias"} <= names
    assert not any("pooler" in name for name in names)


def test_ensure_converts_once_then_only_checks_the_stamp(tmp_path: Path) -> None:
    out = tmp_path / "models" / "minilm.gguf"
    path, converted = minilm.ensure(out)
    assert path == out and converted and out.stat().st_size > 80_000_000
    written = out.stat().st_mtime_ns
    assert minilm.ensure(out) == (out, False)
    assert out.stat().st_mtime_ns == written
    stamp = out.with_name(out.name + ".source-sha256")
    stamp.write_text("a different package\n")  # a new package version, or a new converter
    assert minilm.ensure(out) == (out, True)
    assert sorted(p.name for p in out.parent.iterdir()) == ["minilm.gguf", "minilm.gguf.source-sha256"]


def test_without_the_converted_file_the_settings_name_the_setup_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # a machine where `make embed-model` never ran
    with pytest.raises(ValidationError) as err:
        InferenceSettings()
    assert "embedding_model: 'all-minilm-l6-v2'" in str(err.value) and "make embed-model" in str(err.value)
    chat = InferenceSettings(embedding_model="smollm2-135m-instruct-q4_1")  # the chat model embeds instead
    assert chat.embedding_models == {}
