"""The converted all-MiniLM-L6-v2, run by llama.cpp through Embed, against an independent reference.

The reference is the model written out in numpy straight from the package's safetensors:
word + position + token-type embeddings and their layer norm, 6 blocks of 12-head
self-attention and a GELU feed-forward (each followed by a residual layer norm), mean
pooling over the attention mask, L2 normalisation; float64 throughout. Its tokens come from
the package's own tokenizer.json, run by Hugging Face's ``tokenizers`` (not llama.cpp's
WordPiece). A wrong tensor name, a transposed matrix, a wrong epsilon, pooling or vocabulary
in the converter shows up here as a cosine far from 1.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load as load_safetensors
from tokenizers import Tokenizer

from services.inference import minilm
from services.inference.embedding import embed
from services.inference.gguf_meta import read_gguf
from services.inference.models import EmbeddingModel
from services.inference.settings import InferenceSettings
from tests.services.inference.minilm_sentences import SENTENCES

Array = np.ndarray[Any, Any]


def erf(x: Array) -> Array:
    """The error function (Abramowitz and Stegun 7.1.26, absolute error under 1.5e-7): numpy has none."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    result: Array = sign * (1.0 - poly * np.exp(-a * a))
    return result


def gelu(x: Array) -> Array:
    """BERT's GELU (``hidden_act: gelu``): the exact one, x * Phi(x)."""
    result: Array = 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))
    return result


def layer_norm(x: Array, weight: Array, bias: Array, eps: float) -> Array:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    result: Array = (x - mean) / np.sqrt(var + eps) * weight + bias
    return result


class ReferenceMiniLM:
    """all-MiniLM-L6-v2 in numpy, from the package's zip."""

    def __init__(self, zip_path: Path) -> None:
        with zipfile.ZipFile(zip_path) as archive:
            self.config = json.loads(archive.read("config.json"))
            raw = load_safetensors(archive.read("model.safetensors"))
            self.tokenizer = Tokenizer.from_str(archive.read("tokenizer.json").decode("utf-8"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()  # the file pads and truncates to 128; llama.cpp does neither
        self.w = {name: value.astype(np.float64) for name, value in raw.items() if value.dtype == np.float32}

    def tokens(self, text: str) -> list[int]:
        """[CLS] ... [SEP] ids of ``text`` by the ``tokenizers`` library."""
        return list(self.tokenizer.encode(text).ids)

    def embed(self, texts: list[str]) -> Array:
        """One unit vector per text (padded into one batch; padding masked in attention and pooling)."""
        encodings = [self.tokenizer.encode(text) for text in texts]
        length = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(texts), length), dtype=np.int64)
        types = np.zeros_like(ids)
        mask = np.zeros((len(texts), length), dtype=np.float64)
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            ids[row, :n] = encoding.ids
            types[row, :n] = encoding.type_ids
            mask[row, :n] = encoding.attention_mask
        w, eps = self.w, float(self.config["layer_norm_eps"])
        heads = int(self.config["num_attention_heads"])
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][np.arange(length)][None, :, :]
            + w["embeddings.token_type_embeddings.weight"][types]
        )
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        batch, _, width = x.shape
        size = width // heads
        blocked = (1.0 - mask)[:, None, None, :] * -1e30  # a padded key gets no attention

        def split(t: Array) -> Array:
            return t.reshape(batch, length, heads, size).transpose(0, 2, 1, 3)

        for n in range(int(self.config["num_hidden_layers"])):
            p = f"encoder.layer.{n}."

            def dense(t: Array, name: str, p: str = p) -> Array:
                out: Array = t @ w[p + name + ".weight"].T + w[p + name + ".bias"]
                return out

            q = split(dense(x, "attention.self.query"))
            k = split(dense(x, "attention.self.key"))
            v = split(dense(x, "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(size) + blocked
            scores -= scores.max(-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(-1, keepdims=True)
            context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, width)
            attended = dense(context, "attention.output.dense")
            x = layer_norm(
                x + attended, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps
            )
            fed = dense(gelu(dense(x, "intermediate.dense")), "output.dense")
            x = layer_norm(x + fed, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        pooled = (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
        unit: Array = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return unit


@pytest.fixture(scope="module")
def converted() -> Path:
    """The converted GGUF file (what `make embed-model` writes; converted here if it is not current)."""
    path, _ = minilm.ensure()
    return path


@pytest.fixture(scope="module")
def reference() -> ReferenceMiniLM:
    return ReferenceMiniLM(minilm.package_zip())


def minilm_embedder(path: Path) -> EmbeddingModel:
    """The service's embedding model on ``path``: its own llama instance, as Embed runs it."""
    settings = InferenceSettings(n_ctx=1024, n_threads=2, embedding_models={minilm.MINILM_NAME: path})
    return EmbeddingModel(minilm.MINILM_NAME, path, read_gguf(path), settings)


async def test_llama_cpp_embeddings_of_the_conversion_match_the_numpy_reference(
    converted: Path, reference: ReferenceMiniLM
) -> None:
    assert len(SENTENCES) == 100
    model = minilm_embedder(converted)
    try:
        served = np.array((await embed(model, "reference-check", SENTENCES)).vectors, dtype=np.float64)
    finally:
        model.executor.shutdown(wait=True)
    expected = np.concatenate([reference.embed(SENTENCES[i : i + 10]) for i in range(0, len(SENTENCES), 10)])
    cosines = (served * expected).sum(1) / np.linalg.norm(served, axis=1)
    worst = int(cosines.argmin())
    assert cosines.min() >= 0.999, f"cosine {cosines.min():.5f} on {SENTENCES[worst]!r} (mean {cosines.mean():.6f})"
    # Different texts stay apart: a constant or garbled vector would also be 'close to itself'.
    assert float((served[8] * served[9]).sum()) < 0.5


def test_llama_cpp_tokenizes_like_the_package_tokenizer(converted: Path, reference: ReferenceMiniLM) -> None:
    model = minilm_embedder(converted)
    try:
        llama = model.llama()
        differ = [
            text
            for text in SENTENCES
            if list(llama.tokenize(text.encode("utf-8"), add_bos=True, special=False)) != reference.tokens(text)
        ]
    finally:
        model.executor.shutdown(wait=True)
    assert differ == []


@pytest.mark.xfail(
    strict=True,
    reason="llama.cpp's WordPiece keeps only the leading consonant of each decomposed Hangul syllable (the "
    "vowel and final jamo vanish), so Korean text embeds from a fraction of its letters; strict: a llama.cpp "
    "that tokenizes Korean like the package's tokenizer makes this pass, and then Korean joins the 100",
)
def test_llama_cpp_tokenizes_korean_like_the_package_tokenizer(converted: Path, reference: ReferenceMiniLM) -> None:
    model = minilm_embedder(converted)
    try:
        text = "서울은 한국의 수도입니다."
        assert list(model.llama().tokenize(text.encode("utf-8"), add_bos=True, special=False)) == reference.tokens(text)
    finally:
        model.executor.shutdown(wait=True)
