"""Fitting a head's estimators with scikit-learn and exporting them to numpy (training only).

Every fitted number that the numpy scorer uses is rounded to float32 *and written back into the
scikit-learn estimator* before export, so the kept estimators are exactly the exported model: the
test that numpy equals scikit-learn compares like with like, and the artifact stays small.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp  # type: ignore[import-untyped]
from sklearn.feature_extraction.text import TfidfVectorizer  # type: ignore[import-untyped]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]
from sklearn.svm import LinearSVC  # type: ignore[import-untyped]

from quorum.server.learned.heads import CategoryPrior, sigmoid
from quorum.server.learned.text import focus_text, prompt_cues
from quorum.server.learned.tfidf import FeatureSpace, TfidfBlock, frequent_words

FloatArray = npt.NDArray[np.float64]


def f32(a: npt.ArrayLike) -> FloatArray:
    """Round to float32 precision, kept as float64."""
    return np.asarray(np.asarray(a, dtype=np.float32), dtype=np.float64)


def f16(a: npt.ArrayLike) -> FloatArray:
    """Round to float16 precision (three significant digits), kept as float64.

    Per-model weight matrices are the bulk of the artifact; at this precision a logistic
    regression's probabilities move by about 1e-3 at most, far below the models' own error.
    """
    return np.asarray(np.asarray(a, dtype=np.float16), dtype=np.float64)


@dataclass
class SklearnFeatures:
    """The fitted scikit-learn vectorisers and cue scaler of one head."""

    word: TfidfVectorizer
    char: TfidfVectorizer
    scaler: StandardScaler
    warm_words: tuple[str, ...] = ()

    def transform(self, prompts: Sequence[str]) -> sp.csr_matrix:
        """Feature matrix of ``prompts`` computed by scikit-learn."""
        texts = [focus_text(p) for p in prompts]
        cues = self.scaler.transform(np.asarray([prompt_cues(p) for p in prompts]))
        return sp.hstack(
            [self.word.transform(texts), self.char.transform(texts), sp.csr_matrix(cues)]
        ).tocsr()

    def export(self) -> FeatureSpace:
        """The same features as a numpy :class:`FeatureSpace`."""
        blocks = []
        for vec, analyzer, rng in ((self.word, "word", (1, 2)), (self.char, "char_wb", (3, 5))):
            vocab = {str(k): int(v) for k, v in vec.vocabulary_.items()}
            idf = np.asarray(vec.idf_, dtype=np.float64)
            warm = self.warm_words if analyzer == "char_wb" else ()
            blocks.append(TfidfBlock(analyzer, rng, vocab, idf, warm_words=warm))
        return FeatureSpace(
            tuple(blocks),
            np.asarray(self.scaler.mean_, dtype=np.float64),
            np.asarray(self.scaler.scale_, dtype=np.float64),
        )


def fit_features(
    prompts: Sequence[str], word_features: int, char_features: int, warm_words: int = 20000
) -> SklearnFeatures:
    """Fit word (1-2) and char_wb (3-5) TF-IDF and the cue scaler on ``prompts``.

    The ``warm_words`` most frequent words of the prompts (seen in at least two) are kept so
    that the numpy scorer can look their char n-grams up once, when it loads.
    """
    texts = [focus_text(p) for p in prompts]
    small = len(texts) < 50
    word = TfidfVectorizer(
        preprocessor=_identity,
        ngram_range=(1, 2),
        min_df=1 if small else 2,
        max_features=word_features,
        sublinear_tf=True,
        dtype=np.float64,
    )
    char = TfidfVectorizer(
        preprocessor=_identity,
        analyzer="char_wb",
        ngram_range=(3, 5),
        min_df=1 if small else 3,
        max_features=char_features,
        sublinear_tf=True,
        dtype=np.float64,
    )
    word.fit(texts)
    char.fit(texts)
    word.idf_ = f32(word.idf_)
    char.idf_ = f32(char.idf_)
    cues = np.asarray([prompt_cues(p) for p in prompts])
    scaler = StandardScaler().fit(cues)
    scaler.mean_ = f32(scaler.mean_)
    scaler.scale_ = f32(cue_block_scale(np.asarray(scaler.scale_, dtype=np.float64)))
    return SklearnFeatures(word, char, scaler, frequent_words(texts, warm_words))


def cue_block_scale(std: FloatArray) -> FloatArray:
    """Divisors for the cues: their spread times sqrt(count), floored.

    Each TF-IDF block has unit norm; dividing by ``sqrt(len(std))`` gives the cue block about the
    same, and the floor keeps a rare binary cue from blowing up to a huge value, which would make
    the solvers ill-conditioned (slow and unconverged).
    """
    return np.asarray(np.sqrt(len(std)) * np.maximum(std, 0.25), dtype=np.float64)


def _identity(text: str) -> str:
    """Texts are focused and lower-cased before they reach the vectorisers."""
    return text


def fit_probability(x: sp.csr_matrix | FloatArray, y: FloatArray, c: float) -> LogisticRegression:
    """Logistic regression of a 0..1 score; fractional scores become weighted 0/1 copies.

    Weights are rounded to float16 and the intercept to float32 (see :func:`f16`).
    A constant target gets zero weights and the (clipped) log-odds of its value as intercept.
    """
    n_features = x.shape[1]
    model = LogisticRegression(C=c, solver="liblinear", random_state=0)
    if np.all(y == y[0]):
        p = float(np.clip(y[0], 1e-3, 1 - 1e-3))
        model.classes_ = np.array([0.0, 1.0])
        model.coef_ = np.zeros((1, n_features))
        model.intercept_ = np.array([np.log(p / (1 - p))])
    elif np.all((y == 0) | (y == 1)):
        model.fit(x, y)
    else:
        xx = sp.vstack([x, x]).tocsr() if sp.issparse(x) else np.vstack([x, x])
        yy = np.concatenate([np.ones(len(y)), np.zeros(len(y))])
        model.fit(xx, yy, sample_weight=np.concatenate([y, 1.0 - y]) + 1e-9)
    model.coef_ = f16(model.coef_)
    model.intercept_ = f32(model.intercept_)
    return model


@dataclass
class PerModel:
    """One fitted probability model per model of the pool (columns of the score matrix)."""

    models: list[LogisticRegression]

    def coef(self) -> tuple[FloatArray, FloatArray]:
        """``(features, models)`` weights and ``(models,)`` intercepts."""
        w = np.column_stack([m.coef_[0] for m in self.models])
        b = np.array([m.intercept_[0] for m in self.models])
        return w, b

    def predict(self, x: sp.csr_matrix) -> FloatArray:
        """P(right) per row and model, computed with the exported weights."""
        w, b = self.coef()
        return sigmoid(np.asarray(x @ w) + b)


def fit_per_model(x: sp.csr_matrix, scores: FloatArray, c: float) -> PerModel:
    """Fit :func:`fit_probability` for every column of ``scores`` on the rows that have it."""
    fitted = []
    for j in range(scores.shape[1]):
        have = ~np.isnan(scores[:, j])
        fitted.append(fit_probability(x[have], scores[have, j], c))
    return PerModel(fitted)


@dataclass
class CategoryFit:
    """A category classifier (scikit-learn) and the numpy prior exported from it."""

    classifier: LinearSVC
    prior: CategoryPrior

    def predict(self, x: sp.csr_matrix) -> FloatArray:
        """Expected per-model score from the guessed category, for each row of ``x``."""
        margins = self.prior.temperature * (
            np.asarray(x @ self.prior.weights) + self.prior.intercept
        )
        margins -= margins.max(axis=1, keepdims=True)
        e = np.exp(margins)
        return np.asarray((e / e.sum(axis=1, keepdims=True)) @ self.prior.prior)


def usable_categories(categories: Sequence[str], min_rows: int) -> list[str]:
    """Categories with at least ``min_rows`` rows, sorted."""
    counts: dict[str, int] = {}
    for c in categories:
        counts[c] = counts.get(c, 0) + 1
    return sorted(c for c, n in counts.items() if n >= min_rows and c)


def fit_category(
    x: sp.csr_matrix,
    categories: Sequence[str],
    scores: FloatArray,
    *,
    min_rows: int,
    c: float,
    temperature: float,
    shrinkage: float,
    top_k: int,
    weight: float,
) -> CategoryFit | None:
    """Category classifier plus shrunk per-category success rates; None with < 2 categories.

    The classifier's weights are pruned to the ``top_k`` largest magnitudes per category (the
    rest are zero) to keep the artifact small; the pruned classifier is the one exported.
    """
    labels = usable_categories(categories, min_rows)
    if len(labels) < 2:
        return None
    cats = np.asarray(categories)
    keep = np.isin(cats, labels)
    clf = LinearSVC(C=c, random_state=0).fit(x[keep], cats[keep])
    coef = np.asarray(clf.coef_, dtype=np.float64)
    if top_k < coef.shape[1]:
        cut = -np.partition(-np.abs(coef), top_k - 1, axis=1)[:, top_k - 1 : top_k]
        coef = np.where(np.abs(coef) >= cut, coef, 0.0)
    clf.coef_ = f32(coef)
    clf.intercept_ = f32(clf.intercept_)
    if clf.coef_.shape[0] == 1:  # binary LinearSVC keeps one row: the second class's margin
        weights = np.vstack([-clf.coef_[0] / 2, clf.coef_[0] / 2])
        intercept = np.array([-clf.intercept_[0] / 2, clf.intercept_[0] / 2])
    else:
        weights = np.asarray(clf.coef_)
        intercept = np.asarray(clf.intercept_)
    means = np.nanmean(scores, axis=0)
    prior = np.zeros((len(labels), scores.shape[1]))
    for i, label in enumerate(labels):
        rows = scores[cats == label]
        have = ~np.isnan(rows)
        sums = np.where(have, rows, 0.0).sum(axis=0)
        prior[i] = (sums + shrinkage * means) / (have.sum(axis=0) + shrinkage)
    exported = CategoryPrior(
        labels=tuple(str(x) for x in clf.classes_),
        weights=np.ascontiguousarray(weights.T),
        intercept=intercept,
        temperature=temperature,
        prior=f32(prior[[labels.index(str(x)) for x in clf.classes_]]),
        weight=weight,
    )
    return CategoryFit(clf, exported)
