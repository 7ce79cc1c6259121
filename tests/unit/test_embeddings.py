"""The numpy MiniLM forward pass matches the published model's output."""

from __future__ import annotations

import numpy as np
import pytest

from quorum.server.embeddings import MiniLMEncoder, _erf

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


def test_erf_is_accurate() -> None:
    import math

    xs = np.linspace(-4, 4, 81, dtype=np.float32)
    np.testing.assert_allclose(_erf(xs), [math.erf(float(x)) for x in xs], atol=1e-6)


async def test_async_encode(encoder: MiniLMEncoder) -> None:
    vectors = await encoder.aencode(["hello world"])
    np.testing.assert_allclose(vectors[0][:8], HELLO_WORLD, atol=1e-5)
