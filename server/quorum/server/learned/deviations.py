"""Fitting per-category corrections of the per-model log-odds (training only).

The per-model logistic regressions learn mostly what separates categories (MMLU subjects): held
out, they rank the prompts *within* a subject barely better than chance. Here every model's
regression is fitted on features augmented with a copy of the prompt's features in the block of
its (true) category, scaled by ``alpha`` ("frustratingly easy" domain adaptation):

    logit_m(x) = w_m . x + b_m + alpha * (v_cm . x + a_cm)      for the row's category c

One L2 penalty shrinks both parts, so ``alpha`` sets how far a category may depart from the
shared weights (small ``alpha``: the correction costs more). At serve time the category is
guessed, so each block counts with its posterior P(c | x); see
:class:`~quorum.server.learned.heads.CategoryDeviations`. Each block is pruned to its
``top_k`` largest weights per model (the pruned weights are written back into the estimators,
which therefore stay exactly the exported model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp  # type: ignore[import-untyped]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

from quorum.server.learned.fitting import PerModel, fit_probability
from quorum.server.learned.heads import CategoryDeviations

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


def category_index(categories: Sequence[str], labels: Sequence[str]) -> IntArray:
    """Index of each row's category among ``labels``; -1 for a category without a block."""
    where = {label: i for i, label in enumerate(labels)}
    return np.array([where.get(c, -1) for c in categories], dtype=np.intp)


def augment(x: sp.csr_matrix, index: IntArray, categories: int, alpha: float) -> sp.csr_matrix:
    """``[x, alpha * x in the block of the row's category, alpha * one-hot(category)]``.

    Rows with index -1 get only the shared features.
    """
    x = sp.csr_matrix(x)
    n, features = x.shape
    rows = np.repeat(np.arange(n), np.diff(x.indptr))
    keep = index[rows] >= 0
    block = sp.csr_matrix(
        (x.data[keep] * alpha, (rows[keep], x.indices[keep] + index[rows[keep]] * features)),
        shape=(n, features * categories),
    )
    has = np.nonzero(index >= 0)[0]
    onehot = sp.csr_matrix((np.full(has.size, alpha), (has, index[has])), shape=(n, categories))
    return sp.hstack([x, block, onehot]).tocsr()


def soft_augment(x: sp.csr_matrix, posterior: FloatArray, alpha: float) -> sp.csr_matrix:
    """:func:`augment` with every block weighted by P(category) instead of one true category.

    Dense in the categories: for checks on a few rows, not for training.
    """
    x = sp.csr_matrix(x)
    blocks = [
        sp.csr_matrix(x.multiply(alpha * posterior[:, [c]])) for c in range(posterior.shape[1])
    ]
    return sp.hstack([x, *blocks, sp.csr_matrix(alpha * posterior)]).tocsr()


@dataclass
class DeviationFit:
    """Per-model regressions over augmented features, and their shared and per-category parts."""

    models: list[LogisticRegression]
    alpha: float
    features: int
    categories: int

    def shared(self) -> PerModel:
        """The shared part as plain per-model regressions (the head's ``coef``/``intercept``)."""
        plain = []
        for m in self.models:
            p = LogisticRegression()
            p.classes_ = m.classes_
            p.coef_ = m.coef_[:, : self.features].copy()
            p.intercept_ = m.intercept_.copy()
            plain.append(p)
        return PerModel(plain)

    def weights(self) -> tuple[FloatArray, FloatArray]:
        """``(features, categories * models)`` block weights (column ``c * models + m``) and
        ``(categories, models)`` block intercepts, before the scale ``alpha``."""
        f, k = self.features, self.categories
        blocks = [m.coef_[0, f : f + f * k].reshape(k, f) for m in self.models]  # (k, f) each
        weights = np.stack(blocks, axis=2).transpose(1, 0, 2).reshape(f, k * len(self.models))
        intercept = np.column_stack([m.coef_[0, f + f * k :] for m in self.models])
        return np.asarray(weights, dtype=np.float64), np.asarray(intercept, dtype=np.float64)

    def export(self) -> CategoryDeviations:
        """The per-category parts for the numpy scorer."""
        weights, intercept = self.weights()
        rows, cols = np.nonzero(weights)
        return CategoryDeviations.from_entries(
            rows,
            cols,
            weights[rows, cols],
            features=self.features,
            intercept=intercept,
            alpha=self.alpha,
        )

    def logits(self, x: sp.csr_matrix, posterior: FloatArray) -> FloatArray:
        """Per-model log-odds of the rows of ``x`` given their category posteriors."""
        shared_w, shared_b = self.shared().coef()
        weights, intercept = self.weights()
        per = np.asarray(x @ weights, dtype=np.float64)
        per = per.reshape(x.shape[0], self.categories, -1) + intercept
        shift = self.alpha * np.einsum("nk,nkm->nm", posterior, per)
        return np.asarray(x @ shared_w + shared_b + shift, dtype=np.float64)


def fit_deviations(
    x: sp.csr_matrix,
    index: IntArray,
    categories: int,
    scores: FloatArray,
    *,
    alpha: float,
    c: float,
    top_k: int,
) -> DeviationFit:
    """Fit every model's regression on the augmented features (rows that have its score)."""
    features = x.shape[1]
    xa = augment(x, index, categories, alpha)
    models = []
    for j in range(scores.shape[1]):
        have = ~np.isnan(scores[:, j])
        m = fit_probability(xa[have], scores[have, j], c)
        coef = np.array(m.coef_, dtype=np.float64)
        blocks = coef[0, features : features + features * categories].reshape(categories, features)
        if top_k < features:
            top = np.argpartition(-np.abs(blocks), top_k - 1, axis=1)[:, :top_k]
            kept = np.zeros_like(blocks)
            np.put_along_axis(kept, top, np.take_along_axis(blocks, top, axis=1), axis=1)
            blocks = kept
        coef[0, features : features + features * categories] = blocks.reshape(-1)
        m.coef_ = coef
        models.append(m)
    return DeviationFit(models, alpha, features, categories)
