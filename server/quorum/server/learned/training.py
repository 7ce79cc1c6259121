"""Training the learned router: one head per source, calibrated on out-of-fold predictions.

For each source of the training rows:

1. fit the features (TF-IDF word and char n-grams, cues) on the source's prompts;
2. fit one probability model per model of the pool and, where rows have categories, the
   category prior (:mod:`.fitting`);
3. predict every training row out-of-fold (k folds grouped by row id, so a prompt listed twice
   never sits on both sides) and calibrate on those predictions: the threshold that reaches the
   configured quality target for a pair, the ``lambda`` for a pool of many models, and the
   cascade threshold where rows carry the cheap model's answers — and the same for each of the
   standard targets (95% of the premium's quality, 80% and 50% of the gap), which the server
   config may choose instead (``classifier.learned.quality_target``);
4. refit on all rows and export to numpy.

The config states targets as "fraction of the premium model's quality"; the router finds the
threshold or lambda from data, never from a hand-set number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp  # type: ignore[import-untyped]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]

from quorum.server.learned.data import (
    DataError,
    Price,
    RoutingRow,
    SourceTable,
    build_table,
    estimate_tokens,
    split_by_source,
)
from quorum.server.learned.fitting import (
    CategoryFit,
    PerModel,
    SklearnFeatures,
    f32,
    fit_category,
    fit_features,
    fit_per_model,
    fit_probability,
)
from quorum.server.learned.heads import (
    MULTI,
    PAIR,
    CascadeVerifier,
    CostModel,
    SourceHead,
    sigmoid,
)
from quorum.server.learned.metrics import (
    OF_STRONG,
    STANDARD_TARGETS,
    fraction_of,
    lambda_grid,
    multi_curve,
    refine_lambdas,
    routing_curve,
    target_quality,
)
from quorum.server.learned.router import LearnedRouter
from quorum.server.learned.verifier import answer_cues

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; ``quality_target`` is a fraction of the premium model's quality."""

    quality_target: float = 0.95
    folds: int = 3
    seed: int = 0
    word_features: int = 30000
    char_features: int = 30000
    multi_word_features: int = 10000
    multi_char_features: int = 10000
    c: float = 0.3
    category_c: float = 0.5
    category_temperature: float = 5.0
    category_weight: float = 0.5
    category_shrinkage: float = 20.0
    category_top_k: int = 1200
    category_min_rows: int = 20
    verifier_c: float = 1.0
    default_source: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.quality_target <= 1.0:
            raise ValueError("quality_target is a fraction of the premium's quality, in (0, 1]")
        if self.folds < 2:
            raise ValueError("calibration needs at least 2 folds")


def group_folds(ids: Sequence[str], folds: int, seed: int) -> IntArray:
    """Fold index of each row; rows sharing an id share a fold."""
    unique = sorted(set(ids))
    perm = np.random.default_rng(seed).permutation(len(unique))
    fold_of = {u: int(perm[i]) % folds for i, u in enumerate(unique)}
    return np.array([fold_of[i] for i in ids], dtype=np.intp)


@dataclass
class Verifier:
    """Fitted cascade verifier: scaler and logistic regression over answer cues."""

    scaler: StandardScaler
    model: LogisticRegression

    def predict(self, cues: FloatArray) -> FloatArray:
        """P(cheap answer right) with the exported weights."""
        z = self.scaler.transform(cues) @ self.model.coef_[0] + self.model.intercept_[0]
        return sigmoid(np.asarray(z))


def fit_verifier(cues: FloatArray, weak_scores: FloatArray, c: float) -> Verifier:
    """Fit the verifier on the cheap model's answer cues and its scores."""
    scaler = StandardScaler().fit(cues)
    scaler.mean_ = f32(scaler.mean_)
    scaler.scale_ = f32(np.where(scaler.scale_ > 0, scaler.scale_, 1.0))
    return Verifier(scaler, fit_probability(scaler.transform(cues), weak_scores, c))


@dataclass
class FittedHead:
    """A trained head with the scikit-learn objects it was exported from (for checks)."""

    head: SourceHead
    features: SklearnFeatures
    per_model: PerModel
    category: CategoryFit | None
    verifier: Verifier | None
    oof_expected: FloatArray
    oof_cascade: FloatArray | None
    calibration: dict[str, float] = field(default_factory=dict)

    def sklearn_expected(self, prompts: Sequence[str]) -> FloatArray:
        """Per-model expected scores computed by scikit-learn (reference for the numpy path)."""
        x = self.features.transform(prompts)
        p = np.column_stack([m.predict_proba(x)[:, 1] for m in self.per_model.models])
        if self.category is None:
            return np.asarray(p)
        d = np.asarray(self.category.classifier.decision_function(x), dtype=np.float64)
        if d.ndim == 1:
            d = np.column_stack([-d / 2, d / 2])
        z = self.category.prior.temperature * d
        e = np.exp(z - z.max(axis=1, keepdims=True))
        prior = (e / e.sum(axis=1, keepdims=True)) @ self.category.prior.prior
        w = self.category.prior.weight
        return np.asarray((1 - w) * p + w * prior)


def _fit_core(
    x: sp.csr_matrix, table: SourceTable, rows: IntArray, cfg: TrainConfig
) -> tuple[PerModel, CategoryFit | None]:
    per_model = fit_per_model(x[rows], table.scores[rows], cfg.c)
    category = fit_category(
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
    return per_model, category


def _predict_core(
    x: sp.csr_matrix, per_model: PerModel, category: CategoryFit | None
) -> FloatArray:
    p = per_model.predict(x)
    if category is None:
        return p
    w = category.prior.weight
    return np.asarray((1 - w) * p + w * category.predict(x))


def fit_cost_model(table: SourceTable) -> CostModel:
    """Per model, least squares of cost on estimated prompt tokens (what is known up front)."""
    tokens = np.array([estimate_tokens(p) for p in table.prompts], dtype=np.float64)
    base = np.zeros(len(table.models))
    slope = np.zeros(len(table.models))
    for j in range(len(table.models)):
        have = ~np.isnan(table.costs[:, j])
        design = np.column_stack([np.ones(int(have.sum())), tokens[have]])
        (base[j], slope[j]), *_ = np.linalg.lstsq(design, table.costs[have, j], rcond=None)
    return CostModel(base, slope)


def _pair_thresholds(gain: FloatArray, table: SourceTable, cascade: bool) -> dict[str, float]:
    q, c = table.scores, table.costs
    curve = routing_curve(gain, q[:, 0], q[:, 1], c[:, 0], c[:, 1], cascade=cascade)
    weak, strong = float(q[:, 0].mean()), float(q[:, 1].mean())
    return {
        label: curve.threshold_at(target_quality(level, kind, weak, strong))
        for label, level, kind in STANDARD_TARGETS
    }


def _pair_threshold(gain: FloatArray, table: SourceTable, level: float, cascade: bool) -> float:
    q, c = table.scores, table.costs
    curve = routing_curve(gain, q[:, 0], q[:, 1], c[:, 0], c[:, 1], cascade=cascade)
    return curve.threshold_at(
        target_quality(level, OF_STRONG, float(q[:, 0].mean()), float(q[:, 1].mean()))
    )


def _calibrate_lambda(
    expected: FloatArray,
    est_cost: FloatArray,
    table: SourceTable,
    level: float,
    kind: str = OF_STRONG,
) -> tuple[float, dict[str, float]]:
    """The cheapest ``lambda`` whose out-of-fold mean quality reaches the target (``level`` of
    the premium's quality, or of the gap from the cheapest model's), and its figures."""
    complete = ~np.isnan(table.scores).any(axis=1)
    q, c = table.scores[complete], table.costs[complete]
    premium_cost = float(c[:, -1].mean())
    lams = lambda_grid(float(np.median(est_cost[complete, -1])))
    curve = multi_curve(expected[complete], est_cost[complete], q, c, lams)
    target = target_quality(level, kind, float(q[:, 0].mean()), float(q[:, -1].mean()))
    lams = refine_lambdas(lams, curve.points()[0], target)
    curve = multi_curve(expected[complete], est_cost[complete], q, c, lams)
    pick = curve.cheapest_reaching(target)
    lam = float(lams[pick]) if pick is not None else 0.0
    qs, cs, _ = curve.points()
    i = pick if pick is not None else 0
    return lam, {
        "oof_quality": float(qs[i]),
        "oof_cost_fraction": fraction_of(float(cs[i]), premium_cost),  # NaN if the premium is free
    }


def _calibrate_lambdas(
    expected: FloatArray, est_cost: FloatArray, table: SourceTable
) -> dict[str, float]:
    """A ``lambda`` for each of the standard targets, keyed like a pair head's thresholds."""
    return {
        label: _calibrate_lambda(expected, est_cost, table, level, kind)[0]
        for label, level, kind in STANDARD_TARGETS
    }


def _fit_head_features(table: SourceTable, kind: str, cfg: TrainConfig) -> SklearnFeatures:
    if kind == PAIR:
        return fit_features(table.prompts, cfg.word_features, cfg.char_features)
    # one weight column per model: a smaller vocabulary keeps the artifact small
    return fit_features(table.prompts, cfg.multi_word_features, cfg.multi_char_features)


def _out_of_fold(
    x: sp.csr_matrix, table: SourceTable, folds: IntArray, cfg: TrainConfig
) -> FloatArray:
    """Every row's per-model expected scores from the fit on the other folds."""
    oof = np.zeros((len(table.prompts), len(table.models)))
    for f in range(cfg.folds):
        train_rows = np.nonzero(folds != f)[0]
        test_rows = np.nonzero(folds == f)[0]
        if test_rows.size == 0 or train_rows.size == 0:
            continue
        per_model, category = _fit_core(x, table, train_rows, cfg)
        oof[test_rows] = _predict_core(x[test_rows], per_model, category)
    return oof


def train_head(table: SourceTable, cfg: TrainConfig) -> FittedHead:
    """Train, calibrate and export the head of one source."""
    kind = PAIR if len(table.models) == 2 else MULTI
    features = _fit_head_features(table, kind, cfg)
    x = features.transform(table.prompts)
    n = len(table.prompts)
    folds = group_folds(table.ids, cfg.folds, cfg.seed)
    oof = _out_of_fold(x, table, folds, cfg)
    per_model, category = _fit_core(x, table, np.arange(n), cfg)
    cost = fit_cost_model(table)
    coef, intercept = per_model.coef()
    calibration: dict[str, float] = {}
    threshold: float | None = None
    thresholds: dict[str, float] = {}
    lam: float | None = None
    lambdas: dict[str, float] = {}
    cascade: CascadeVerifier | None = None
    verifier: Verifier | None = None
    oof_cascade: FloatArray | None = None
    if kind == PAIR:
        complete = ~np.isnan(table.scores).any(axis=1)
        sub = table.subset(np.nonzero(complete)[0])
        gain = oof[complete, 1] - oof[complete, 0]
        threshold = _pair_threshold(gain, sub, cfg.quality_target, cascade=False)
        thresholds = _pair_thresholds(gain, sub, cascade=False)
        if table.has_cheap_responses:
            cues = np.asarray(
                [answer_cues(p, r) for p, r in zip(table.prompts, table.responses, strict=True)]
            )
            weak = np.nan_to_num(table.scores[:, 0])
            p_cheap = np.zeros(n)
            for f in range(cfg.folds):
                tr, te = folds != f, folds == f
                if te.any() and tr.any():
                    p_cheap[te] = fit_verifier(cues[tr], weak[tr], cfg.verifier_c).predict(cues[te])
            oof_cascade = oof[:, 1] - p_cheap
            verifier = fit_verifier(cues, weak, cfg.verifier_c)
            cgain = oof_cascade[complete]
            cascade = CascadeVerifier(
                coef=np.asarray(verifier.model.coef_[0], dtype=np.float64),
                intercept=float(verifier.model.intercept_[0]),
                mean=np.asarray(verifier.scaler.mean_, dtype=np.float64),
                scale=np.asarray(verifier.scaler.scale_, dtype=np.float64),
                threshold=_pair_threshold(cgain, sub, cfg.quality_target, cascade=True),
                thresholds=_pair_thresholds(cgain, sub, cascade=True),
            )
    else:
        est_cost = np.array([cost.estimate(p) for p in table.prompts])
        lam, calibration = _calibrate_lambda(oof, est_cost, table, cfg.quality_target)
        lambdas = _calibrate_lambdas(oof, est_cost, table)
    head = SourceHead(
        source=table.source,
        kind=kind,
        models=table.models,
        space=features.export(),
        coef=coef,
        intercept=intercept,
        category=None if category is None else category.prior,
        cost=cost,
        quality_target=cfg.quality_target,
        threshold=threshold,
        thresholds=thresholds,
        lam=lam,
        lambdas=lambdas,
        cascade=cascade,
    )
    return FittedHead(head, features, per_model, category, verifier, oof, oof_cascade, calibration)


MODEL_BASED = "model-based (partial feedback rows)"
"""How a head trained on partial rows (:func:`train_partial_head`) was calibrated."""


def _model_based_table(table: SourceTable, oof: FloatArray, est_cost: FloatArray) -> SourceTable:
    """The table with every missing score replaced by its out-of-fold estimate and every
    missing cost by the cost model's estimate: what calibration on partial rows can use."""
    return replace(
        table,
        scores=np.where(np.isnan(table.scores), oof, table.scores),
        costs=np.where(np.isnan(table.costs), est_cost, table.costs),
    )


def train_partial_head(table: SourceTable, cfg: TrainConfig) -> FittedHead:
    """Train a head on *partial* rows: each row has the results of some models only (the
    decision log's feedback has one, the model that answered).

    The estimators need no full rows: each model's logistic regression is fitted on the rows that
    have its result, the category prior on the per-category means of the results there are, and
    each model's cost line on its own observed costs. The threshold (two models) or ``lambda``
    (more) normally comes from observed outcomes of *every* model on the same prompts; here it is
    calibrated **model-based** (:data:`MODEL_BASED`, written to the head's manifest entry): every
    row is completed with each missing model's out-of-fold estimate (its observed verdict where
    the row has one) and its estimated cost, and the threshold or ``lambda`` reaching the quality
    target on those completed rows is chosen. The figures stored with it (``model_based_*``) are
    the estimators' own expectation, not a measurement; no cascade verifier is fitted (the log
    keeps no answers). Raises :class:`DataError` when some model's rows all fall in one
    calibration fold (no out-of-fold estimate for them).
    """
    kind = PAIR if len(table.models) == 2 else MULTI
    folds = group_folds(table.ids, cfg.folds, cfg.seed)
    for j, model in enumerate(table.models):
        have = ~np.isnan(table.scores[:, j])
        if len(set(folds[have].tolist())) < 2:
            raise DataError(
                f"source {table.source!r}: the {int(have.sum())} rows of model {model!r} all fall "
                f"in one of the {cfg.folds} calibration folds; it needs feedback on more prompts"
            )
    features = _fit_head_features(table, kind, cfg)
    x = features.transform(table.prompts)
    n = len(table.prompts)
    oof = _out_of_fold(x, table, folds, cfg)
    per_model, category = _fit_core(x, table, np.arange(n), cfg)
    cost = fit_cost_model(table)
    coef, intercept = per_model.coef()
    est_cost = np.array([cost.estimate(p) for p in table.prompts])
    proxy = _model_based_table(table, oof, est_cost)
    q, c = proxy.scores, proxy.costs
    threshold: float | None = None
    thresholds: dict[str, float] = {}
    lam: float | None = None
    lambdas: dict[str, float] = {}
    if kind == PAIR:
        gain = oof[:, 1] - oof[:, 0]
        threshold = _pair_threshold(gain, proxy, cfg.quality_target, cascade=False)
        thresholds = _pair_thresholds(gain, proxy, cascade=False)
        routed = gain >= threshold
        quality = float(np.where(routed, q[:, 1], q[:, 0]).mean())
        spent = float(np.where(routed, c[:, 1], c[:, 0]).mean())
        share = float(routed.mean())
    else:
        lam, figures = _calibrate_lambda(oof, est_cost, proxy, cfg.quality_target)
        lambdas = _calibrate_lambdas(oof, est_cost, proxy)
        pick = np.argmax(oof - lam * est_cost, axis=1)
        quality = figures["oof_quality"]
        spent = float(c[np.arange(n), pick].mean())
        share = float(np.mean(pick == len(table.models) - 1))
    calibration = {
        "model_based_quality_of_premium": fraction_of(quality, float(q[:, -1].mean())),
        "model_based_premium_share": share,
        "model_based_cost_fraction": fraction_of(spent, float(c[:, -1].mean())),
    }
    head = SourceHead(
        source=table.source,
        kind=kind,
        models=table.models,
        space=features.export(),
        coef=coef,
        intercept=intercept,
        category=None if category is None else category.prior,
        cost=cost,
        quality_target=cfg.quality_target,
        threshold=threshold,
        thresholds=thresholds,
        lam=lam,
        lambdas=lambdas,
        cascade=None,
        calibration=MODEL_BASED,
    )
    return FittedHead(head, features, per_model, category, None, oof, None, calibration)


def check_pools(rows: Sequence[RoutingRow]) -> None:
    """Raise :class:`DataError` naming a source of ``rows`` that fewer than two models answer:
    its head would have nothing to choose between."""
    for source, source_rows in split_by_source(rows).items():
        models = sorted({m for r in source_rows for m in r.results})
        if len(models) < 2:
            raise DataError(
                f"source {source!r}: only {', '.join(map(repr, models))} answers its "
                f"{len(source_rows)} rows; a routing head needs two or more models to choose "
                "between (add rows with other models' results, or leave the source out)"
            )


def check_complete_rows(rows: Sequence[RoutingRow]) -> None:
    """Raise :class:`DataError` naming a source of ``rows`` none of whose rows has a result
    for every model of the source: a head's threshold (or ``lambda``) is calibrated on
    prompts every model answered, and there would be none."""
    for source, source_rows in split_by_source(rows).items():
        models = sorted({m for r in source_rows for m in r.results})
        if not any(len(r.results) == len(models) for r in source_rows):
            raise DataError(
                f"source {source!r}: none of its {len(source_rows)} rows has a result for every "
                f"one of its models ({', '.join(models)}); --data needs rows every model "
                "answered, to calibrate the head on (partial rows, such as a decision log's "
                "feedback, train with --feedback)"
            )


def train_heads(
    rows: Sequence[RoutingRow], prices: Mapping[str, Price], cfg: TrainConfig
) -> dict[str, FittedHead]:
    """Train one head per source of ``rows`` (:func:`check_pools` and
    :func:`check_complete_rows` first)."""
    check_pools(rows)
    check_complete_rows(rows)
    return {
        source: train_head(build_table(source_rows, prices), cfg)
        for source, source_rows in split_by_source(rows).items()
    }


def train_router(
    rows: Sequence[RoutingRow],
    prices: Mapping[str, Price],
    cfg: TrainConfig,
    partial_rows: Sequence[RoutingRow] = (),
) -> tuple[LearnedRouter, dict[str, FittedHead]]:
    """Train every head and assemble the router.

    ``partial_rows`` (the decision log's feedback, :mod:`.decision_log`) get one head per source
    by :func:`train_partial_head`; their sources must differ from those of ``rows``. The default
    source is the config's, else the one with the most training rows. Raises :class:`DataError`
    before training anything when a source has fewer than two models (:func:`check_pools`), or
    when no row of a source of ``rows`` has every model's result (:func:`check_complete_rows`).
    """
    check_pools([*rows, *partial_rows])
    check_complete_rows(rows)
    fitted = train_heads(rows, prices, cfg)
    for source, source_rows in split_by_source(partial_rows).items():
        if source in fitted:
            raise DataError(
                f"source {source!r} is both in the routing data and in the decision log's rows; "
                "give the decision log's rows another source name"
            )
        fitted[source] = train_partial_head(build_table(source_rows, prices), cfg)
    if not fitted:
        raise ValueError("no training rows")
    sizes = {s: len(f.oof_expected) for s, f in fitted.items()}
    default = cfg.default_source or max(sizes, key=lambda s: sizes[s])
    router = LearnedRouter(heads={s: f.head for s, f in fitted.items()}, default_source=default)
    return router, fitted
