"""The numpy MiniLM forward pass matches the published model's output."""

from __future__ import annotations

import numpy as np
import pytest

from quorum.server.embeddings import MiniLMEncoder

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


@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    return MiniLMEncoder()


def test_matches_reference_embedding(encoder: MiniLMEncoder) -> None:
    vector = encoder.encode(["hello world"])[0]
    assert vector.shape == (384,)
    np.testing.assert_allclose(vector[:8], HELLO_WORLD, atol=1e-5)
    assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-5)


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


async def test_async_encode(encoder: MiniLMEncoder) -> None:
    vectors = await encoder.aencode(["hello world"])
    np.testing.assert_allclose(vectors[0][:8], HELLO_WORLD, atol=1e-5)


def test_gelu_matches_the_erf_definition() -> None:
    import math

    from quorum.server.embeddings import _SCRATCH, _gelu_

    xs = np.concatenate([np.linspace(-12, 12, 481), [-80.0, -30.0, 0.0, 30.0]]).astype(np.float32)
    got = xs.copy()
    _gelu_(got, _SCRATCH)
    want = [0.5 * float(x) * (1.0 + math.erf(float(x) / math.sqrt(2.0))) for x in xs]
    np.testing.assert_allclose(got, want, atol=2e-6, rtol=1e-6)


def test_split_pass_equals_one_thread_pass(
    encoder: MiniLMEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import quorum.server.embeddings as embeddings

    long = " ".join(f"word{i} of a long prompt about routing" for i in range(40))
    short = "a short one"
    assert len(encoder.tokenizer.encode(long).ids) > embeddings._SPLIT_ROWS
    encoder._cache.clear()
    split = encoder.encode([long, short])
    encoder._cache.clear()
    monkeypatch.setattr(embeddings, "_SPLIT_ROWS", 10**9)
    single = encoder.encode([long, short])
    np.testing.assert_allclose(split, single, atol=1e-6)


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


def test_large_scratch_buffers_are_not_kept() -> None:
    from quorum.server.embeddings import _KEEP_FLOATS, _Scratch

    scratch = _Scratch()
    small = scratch.take("a", (4, 8))
    assert small.shape == (4, 8)
    assert scratch.take("a", (2, 8)).base is small.base
    scratch.take("b", (_KEEP_FLOATS + 1,))
    assert "b" not in scratch.buffers
