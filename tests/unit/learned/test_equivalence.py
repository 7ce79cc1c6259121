"""The numpy scorer equals the scikit-learn pipeline it was exported from, to 1e-9."""

from __future__ import annotations

import numpy as np
import pytest

from quorum.server.learned.data import default_data_dir, load_prices, parse_row
from quorum.server.learned.heads import MULTI, PAIR
from quorum.server.learned.router import LearnedRouter
from quorum.server.learned.training import FittedHead, train_router

from .conftest import SMALL
from .synthetic import STRONG, WEAK

Trained = tuple[LearnedRouter, dict[str, FittedHead]]

PROBES = [
    "Question 7: what about the integral prime matrix of 12?\nA. 1\nB. 2\nAnswer:",
    "Question 8: what about the empire treaty of 40?\nA. 1\nB. 2\nAnswer:",
    "Task 3: prove the theorem carefully now",
    "something entirely new, with unseen words ⚙ and 3.5 numbers",
    "",
]


@pytest.mark.parametrize("source", ["synth-pair", "synth-multi"])
def test_numpy_scores_equal_sklearn(trained: Trained, source: str) -> None:
    _, fitted = trained
    f = fitted[source]
    numpy_scores = np.array([f.head.expected_scores(p) for p in PROBES])
    np.testing.assert_allclose(numpy_scores, f.sklearn_expected(PROBES), rtol=0, atol=1e-9)


def test_heads_have_the_right_shape(trained: Trained) -> None:
    router, fitted = trained
    pair, multi = router.head("synth-pair"), router.head("synth-multi")
    assert pair.kind == PAIR and pair.models == (WEAK, STRONG)
    assert pair.threshold is not None and pair.cascade is not None and pair.category is not None
    assert (
        multi.kind == MULTI and multi.models == ("tiny", "small", "large") and multi.lam is not None
    )
    assert fitted["synth-pair"].oof_cascade is not None


def test_scores_are_sensible(trained: Trained) -> None:
    router, _ = trained
    maths = router.score(PROBES[0], source="synth-pair")
    history = router.score(PROBES[1], source="synth-pair")
    assert maths.gains[1] > history.gains[1]  # the strong model helps on maths only
    assert maths.recommended == STRONG and history.recommended == WEAK
    hard = router.score("Task 9: prove the theorem carefully now", source="synth-multi")
    assert hard.recommended == "large"
    assert all(c > 0 for c in hard.expected_costs_usd)
    bad = router.verify(PROBES[0], "We compute 12 + 1 = <<12+1=15>>", source="synth-pair")
    good = router.verify(
        PROBES[0], "We compute 12 + 1 = <<12+1=13>>13.\n#### 13", source="synth-pair"
    )
    assert bad.p_cheap_correct < good.p_cheap_correct


def test_real_data_slice_if_present() -> None:
    path = default_data_dir() / "routellm_train.jsonl"
    if not path.is_file():
        pytest.skip("real routing data not present")
    with path.open(encoding="utf-8") as fh:
        lines = [next(fh) for _ in range(120)]
    rows = [parse_row(line, f"{path.name}:{i}") for i, line in enumerate(lines, 1)]
    router, fitted = train_router(rows, load_prices(), SMALL)
    f = fitted["routellm-mmlu"]
    prompts = [r.prompt for r in rows[:10]]
    got = np.array([f.head.expected_scores(p) for p in prompts])
    np.testing.assert_allclose(got, f.sklearn_expected(prompts), rtol=0, atol=1e-9)
    assert router.head().models[-1] == "gpt-4-1106-preview"


def test_unknown_source_is_a_clear_error(trained: Trained) -> None:
    from quorum.server.learned import UnknownSourceError

    router, _ = trained
    with pytest.raises(UnknownSourceError, match="no head for source 'nope'"):
        router.score("hi", source="nope")
