"""The ONNX Runtime MiniLM encoder matches the published model and a textbook forward pass."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import numpy.typing as npt
import pytest

from quorum.server.embeddings import MiniLMEncoder, default_model_dir

# First values of the published all-MiniLM-L6-v2 embedding of "hello world".
HELLO_WORLD = [
    -0.03447727,
    0.03102322,
    0.00673496,
    0.02610897,
    -0.03936202,
    -0.16030248,
    0.06692398,
    -0.00644137,
]

# float32 ORT against the float64 pass below: the bound the engine was accepted on.
MIN_COSINE = 0.99999

F64 = npt.NDArray[np.float64]


@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    return MiniLMEncoder()


@cache
def _weights() -> dict[str, F64]:
    from safetensors.numpy import load_file

    raw = load_file(str(default_model_dir() / "model.safetensors"))
    return {name: value.astype(np.float64) for name, value in raw.items() if value.ndim}


def _gelu(x: F64) -> F64:
    """GELU with the exact erf (BERT's "gelu"), elementwise through math.erf."""
    erf = np.asarray(np.frompyfunc(math.erf, 1, 1)(x / math.sqrt(2.0)), dtype=np.float64)
    out: F64 = 0.5 * x * (1.0 + erf)
    return out


def _reference(ids: list[int]) -> F64:
    """Test-only: BERT as written in the paper, float64, one unpadded text; mean-pooled
    and L2-normalised as sentence-transformers does for all-MiniLM-L6-v2."""
    w = _weights()
    heads, size = 12, 32

    def norm(x: F64, prefix: str) -> F64:
        centred = x - x.mean(axis=-1, keepdims=True)
        scaled = centred / np.sqrt((centred**2).mean(axis=-1, keepdims=True) + 1e-12)
        out: F64 = scaled * w[prefix + "weight"] + w[prefix + "bias"]
        return out

    def linear(x: F64, prefix: str) -> F64:
        return x @ w[prefix + "weight"].T + w[prefix + "bias"]

    n = len(ids)
    x = w["embeddings.word_embeddings.weight"][ids]
    x = x + w["embeddings.position_embeddings.weight"][:n]
    x = norm(x + w["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm.")
    for i in range(6):
        p = f"encoder.layer.{i}."
        q, k, v = (
            linear(x, f"{p}attention.self.{part}.").reshape(n, heads, size).transpose(1, 0, 2)
            for part in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(size)
        probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        context = (probs @ v).transpose(1, 0, 2).reshape(n, heads * size)
        attended = linear(context, p + "attention.output.dense.")
        x = norm(attended + x, p + "attention.output.LayerNorm.")
        up = _gelu(linear(x, p + "intermediate.dense."))
        x = norm(linear(up, p + "output.dense.") + x, p + "output.LayerNorm.")
    pooled: F64 = x.mean(axis=0)
    unit: F64 = pooled / np.linalg.norm(pooled)
    return unit


def _cosine(a: npt.NDArray[np.floating], b: npt.NDArray[np.floating]) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


LONG = " ".join(
    f"step {i}: route the prompt to the cheapest model that can answer" for i in range(60)
)
TEXTS = [
    "",
    "hello world",
    "How do I reset my password?",
    " ".join(["Summarise the quarterly report and list the three largest risks."] * 14),
    LONG,
]


def test_matches_reference_embedding(encoder: MiniLMEncoder) -> None:
    vector = encoder.encode(["hello world"])[0]
    assert vector.shape == (384,)
    np.testing.assert_allclose(vector[:8], HELLO_WORLD, atol=1e-5)
    assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-5)


def test_agrees_with_a_float64_forward_pass(encoder: MiniLMEncoder) -> None:
    encoder._cache.clear()
    together = encoder.encode(TEXTS)  # one padded batch
    encoder._cache.clear()
    alone = np.vstack([encoder.encode([t]) for t in TEXTS])
    for text, batched, single in zip(TEXTS, together, alone, strict=True):
        want = _reference(encoder.tokenizer.encode(text).ids)
        assert _cosine(batched, want) >= MIN_COSINE, text[:40]
        assert _cosine(single, want) >= MIN_COSINE, text[:40]
        assert float(np.linalg.norm(single)) == pytest.approx(1.0, abs=1e-5)


def test_paraphrases_are_closer_than_unrelated(encoder: MiniLMEncoder) -> None:
    a, b, c = encoder.encode(
        [
            "How do I reset my password?",
            "I forgot my login password",
            "The weather in Paris is sunny",
        ]
    )
    assert float(a @ b) > 0.6 > float(a @ c)


def test_batching_and_padding_do_not_change_results(encoder: MiniLMEncoder) -> None:
    texts = ["short", "a much longer sentence that needs padding in a batch with others"]
    together = encoder.encode(texts)
    encoder._cache.clear()
    alone = np.vstack([encoder.encode([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    encoder._cache.clear()
    in_twos = encoder.encode(TEXTS, batch_size=2)
    encoder._cache.clear()
    np.testing.assert_allclose(in_twos, encoder.encode(TEXTS), atol=1e-5)


def test_empty_text_and_no_texts(encoder: MiniLMEncoder) -> None:
    assert encoder.encode([]).shape == (0, 384)
    assert encoder.tokenizer.encode("").ids == [101, 102]  # [CLS] [SEP]
    vector = encoder.encode([""])[0]
    assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-5)
    assert _cosine(vector, _reference([101, 102])) >= MIN_COSINE


def test_long_prompts_are_truncated(encoder: MiniLMEncoder) -> None:
    ids = encoder.tokenizer.encode(LONG).ids
    assert len(ids) == 256 and ids[-1] == 102
    longer = LONG + " and then some more words that fall past the limit"
    a, b = encoder.encode([LONG, longer])
    np.testing.assert_allclose(a, b, atol=1e-6)


async def test_async_encode(encoder: MiniLMEncoder) -> None:
    vectors = await encoder.aencode(["hello world"])
    np.testing.assert_allclose(vectors[0][:8], HELLO_WORLD, atol=1e-5)


async def test_concurrent_callers_get_their_own_vectors(encoder: MiniLMEncoder) -> None:
    import asyncio

    texts = [f"question number {i}: how do I {w}?" for i, w in enumerate("abcdefgh")]
    texts += [" ".join([t] * 12) for t in texts[:4]]
    encoder._cache.clear()
    alone = encoder.encode(texts)
    encoder._cache.clear()
    together = await asyncio.gather(*(encoder.aencode([t]) for t in texts))
    np.testing.assert_allclose(np.vstack(together), alone, atol=1e-6)
    # Now every text is cached: answered without a thread, same vectors.
    again = await asyncio.gather(*(encoder.aencode([t]) for t in texts))
    np.testing.assert_allclose(np.vstack(again), alone, atol=1e-6)


def test_graph_names_its_weights_as_external_data() -> None:
    from onnx import TensorProto

    from quorum.server.embeddings import _build

    model, weights = _build(default_model_dir())
    external = [t.name for t in model.graph.initializer if t.data_location == TensorProto.EXTERNAL]
    assert sorted(external) == sorted(weights)
    assert sum(a.size for a in weights.values()) > 22_000_000  # all of MiniLM's parameters
    assert model.ByteSize() < 100_000  # the graph alone, not the 90 MB of weights
