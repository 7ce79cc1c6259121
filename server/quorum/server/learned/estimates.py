"""A head's per-model success estimates, fitted with scikit-learn (training only).

Three parts, as :class:`~quorum.server.learned.heads.SourceHead` scores them:

* per-model logistic regressions over the features (:func:`.fitting.fit_per_model`);
* where rows have categories, the category prior (:func:`.fitting.fit_category`), averaged in;
* optionally, per-category corrections of the regressions' log-odds (:mod:`.deviations`), whose
  scale ``alpha`` (0 = none) is chosen per source by the calibration folds of training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp  # type: ignore[import-untyped]

from quorum.server.learned.data import SourceTable
from quorum.server.learned.deviations import DeviationFit, category_index, fit_deviations
from quorum.server.learned.fitting import CategoryFit, PerModel, fit_category, fit_per_model
from quorum.server.learned.heads import sigmoid

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


@dataclass(frozen=True)
class EstimateConfig:
    """The fitting settings of :func:`fit_estimates` (a subset of the training config)."""

    c: float
    category_c: float
    category_temperature: float
    category_weight: float
    category_shrinkage: float
    category_top_k: int
    category_min_rows: int
    deviation_top_k: int


@dataclass
class Estimates:
    """Fitted per-model regressions (shared part), category prior and deviations."""

    per_model: PerModel
    category: CategoryFit | None
    deviations: DeviationFit | None

    def predict(self, x: sp.csr_matrix) -> FloatArray:
        """Expected per-model scores of the rows of ``x``, with the exported weights."""
        if self.category is None:
            return self.per_model.predict(x)
        posterior = self.category.posterior(x)
        if self.deviations is None:
            p = self.per_model.predict(x)
        else:
            p = sigmoid(self.deviations.logits(x, posterior))
        w = self.category.prior.weight
        return np.asarray((1 - w) * p + w * (posterior @ self.category.prior.prior))


def fit_category_of(
    x: sp.csr_matrix, table: SourceTable, rows: IntArray, cfg: EstimateConfig
) -> CategoryFit | None:
    """The category classifier and prior fitted on ``rows`` (None without categories)."""
    return fit_category(
        x[rows],
        [table.categories[i] for i in rows],
        table.scores[rows],
        min_rows=cfg.category_min_rows,
        c=cfg.category_c,
        temperature=cfg.category_temperature,
        shrinkage=cfg.category_shrinkage,
        top_k=cfg.category_top_k,
        weight=cfg.category_weight,
    )


def fit_estimates(
    x: sp.csr_matrix,
    table: SourceTable,
    rows: IntArray,
    cfg: EstimateConfig,
    category: CategoryFit | None,
    alpha: float,
) -> Estimates:
    """Fit the per-model parts on ``rows`` beside an already fitted ``category``.

    With ``alpha > 0`` (and a category) the regressions carry per-category deviations.
    """
    scores = table.scores[rows]
    if alpha <= 0 or category is None:
        return Estimates(fit_per_model(x[rows], scores, cfg.c), category, None)
    labels = category.prior.labels
    index = category_index([table.categories[i] for i in rows], labels)
    deviations = fit_deviations(
        x[rows], index, len(labels), scores, alpha=alpha, c=cfg.c, top_k=cfg.deviation_top_k
    )
    return Estimates(deviations.shared(), category, deviations)
