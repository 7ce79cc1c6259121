"""Per-category deviations: exported exactly, saved and loaded, and chosen by inner folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp  # type: ignore[import-untyped]

from quorum.server.learned.artifact import save_router
from quorum.server.learned.deviations import augment, category_index, soft_augment
from quorum.server.learned.router import LearnedRouter
from quorum.server.learned.training import FittedHead

from .conftest import SMALL

Trained = tuple[LearnedRouter, dict[str, FittedHead]]

PROBES = [
    "Question 7: what about the integral prime matrix of 12?\nA. 1\nB. 2\nAnswer:",
    "Question 8: what about the empire treaty of 40?\nA. 1\nB. 2\nAnswer:",
    "Task 3: prove the theorem carefully now",
    "something entirely new, with unseen words and 3.5 numbers",
    "",
]


def test_augment_puts_each_row_in_its_category_block() -> None:
    x = sp.csr_matrix(np.array([[1.0, 2.0], [3.0, 0.0], [0.0, 4.0]]))
    index = category_index(["b", "a", "zzz"], ["a", "b"])
    assert index.tolist() == [1, 0, -1]
    got = augment(x, index, 2, 0.5).toarray()
    want = np.array(
        [
            [1, 2, 0, 0, 0.5, 1, 0, 0.5],
            [3, 0, 1.5, 0, 0, 0, 0.5, 0],
            [0, 4, 0, 0, 0, 0, 0, 0],
        ]
    )
    np.testing.assert_allclose(got, want)
    onehot = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(soft_augment(x, onehot, 0.5).toarray()[:2], want[:2])


@pytest.mark.parametrize("source", ["synth-pair", "synth-multi"])
def test_numpy_scores_with_deviations_equal_sklearn(
    trained_with_deviations: Trained, source: str
) -> None:
    _, fitted = trained_with_deviations
    f = fitted[source]
    assert f.head.deviations is not None and f.head.deviations.alpha == 0.5
    kept = np.count_nonzero(f.head.deviations.dense(), axis=0)
    assert kept.max() <= 40  # pruned to top_k per category and model
    numpy_scores = np.array([f.head.expected_scores(p) for p in PROBES])
    np.testing.assert_allclose(numpy_scores, f.sklearn_expected(PROBES), rtol=0, atol=1e-9)


def test_deviations_survive_the_artifact(trained_with_deviations: Trained, tmp_path: Path) -> None:
    router, _ = trained_with_deviations
    save_router(router, tmp_path / "art", {})
    loaded = LearnedRouter.load(tmp_path / "art")
    for source in router.sources:
        before, after = router.head(source).deviations, loaded.head(source).deviations
        assert before is not None and after is not None and before.alpha == after.alpha
        np.testing.assert_array_equal(before.dense(), after.dense())
        for prompt in PROBES:
            a, b = router.score(prompt, source), loaded.score(prompt, source)
            np.testing.assert_allclose(a.expected_scores, b.expected_scores, rtol=0, atol=1e-12)


def test_the_scale_is_chosen_from_the_grid(trained: Trained) -> None:
    _, fitted = trained
    for f in fitted.values():
        alpha = f.calibration["category_alpha"]
        assert alpha in SMALL.category_alphas
        assert (f.head.deviations is None) == (alpha == 0.0)
