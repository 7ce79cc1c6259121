"""Per-source routing heads: numpy scoring of one trained model pool.

A *head* is what the router learned about one source (one pool of models): for every model the
probability that it answers a prompt well, and what it will cost. Scoring a prompt:

1. features: TF-IDF n-grams of the focused prompt plus standardised cues (:mod:`.tfidf`);
2. per model, a logistic regression gives P(model right | prompt);
3. where training rows had categories (MMLU subjects, RouterBench tasks), a linear classifier
   guesses the category from the text and the per-category success rates, shrunk towards the
   source mean, give a second estimate; the two are averaged (``category.weight``);
4. *pair* heads (two models) route to the strong model when the expected gain
   ``E[strong] - E[weak]`` reaches the calibrated threshold — RouteLLM's strong-win-rate idea
   with the weak model's own chance of being right taken into account;
5. *multi* heads pick ``argmax_m E[m] - lambda * cost_m`` with a calibrated ``lambda``;
6. a pair head may carry a cascade verifier that reads the cheap model's answer and escalates
   when ``E[strong] - P(cheap answer right)`` reaches its own threshold.

Everything here is numpy and the standard library: no scikit-learn at serve time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from quorum.server.learned.data import estimate_tokens
from quorum.server.learned.metrics import OF_STRONG, STANDARD_TARGETS
from quorum.server.learned.tfidf import FeatureSpace, SparseRow
from quorum.server.learned.verifier import answer_cues

FloatArray = npt.NDArray[np.float64]

PAIR = "pair"
MULTI = "multi"

_TARGET = re.compile(r"^(\d+(?:\.\d+)?)% of (premium|gap)$")


class QualityTargetError(ValueError):
    """A quality target the head has no stored calibration for (the message lists those)."""


def target_name(level: float, kind: str) -> str:
    """A quality target as text: ``"95% of premium"`` (of the premium model's quality) or
    ``"80% of gap"`` (of the way from the cheapest model's quality to the premium's)."""
    return f"{round(level * 100, 6):g}% of {'premium' if kind == OF_STRONG else 'gap'}"


STORED_TARGETS: Mapping[str, str] = {
    label: target_name(level, kind) for label, level, kind in STANDARD_TARGETS
}
"""Manifest label (``thresholds``/``lambdas`` keys) → the target it was calibrated for."""


def is_target_name(text: str) -> bool:
    """Whether ``text`` is a target as :func:`target_name` writes it."""
    return _TARGET.match(text) is not None


def sigmoid(z: FloatArray) -> FloatArray:
    """Logistic function, stable for large ``|z|``."""
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)), dtype=np.float64)


def softmax(z: FloatArray) -> FloatArray:
    """Softmax of a vector."""
    e = np.exp(z - z.max())
    return np.asarray(e / e.sum(), dtype=np.float64)


@dataclass(frozen=True)
class RouterScores:
    """What the router thinks of one prompt, for the planner.

    ``models`` run from cheapest to dearest; ``expected_scores[i]`` is the estimated chance (or
    mean grade) of ``models[i]`` answering well, ``expected_costs_usd[i]`` its estimated cost, and
    ``gains[i] = expected_scores[i] - expected_scores[0]`` its expected quality gain over the
    cheapest model (for a pair, ``gains[1]`` is the routing score compared with ``threshold``).
    ``recommended`` is the model chosen for the calibration in use, ``target`` (the head's
    trained ``quality_target`` unless the server config chose another stored one).
    """

    source: str
    models: tuple[str, ...]
    expected_scores: tuple[float, ...]
    expected_costs_usd: tuple[float, ...]
    gains: tuple[float, ...]
    recommended: str
    threshold: float | None
    quality_target: float
    target: str = ""  # the calibration in use, e.g. "95% of premium"


@dataclass(frozen=True)
class CascadeDecision:
    """A cascade verifier's verdict on the cheap model's answer."""

    escalate: bool
    p_cheap_correct: float
    gain: float
    threshold: float


@dataclass(frozen=True)
class CategoryPrior:
    """Category guessed from text, mapped to per-category success rates of each model."""

    labels: tuple[str, ...]
    weights: FloatArray  # (features, categories)
    intercept: FloatArray  # (categories,)
    temperature: float
    prior: FloatArray  # (categories, models)
    weight: float

    def probabilities(self, row: SparseRow) -> FloatArray:
        """P(category | prompt): a softmax of the classifier's margins."""
        return softmax(self.temperature * (row.dot(self.weights) + self.intercept))

    def expected(self, row: SparseRow) -> FloatArray:
        """Per-model success rate expected from the guessed category."""
        return np.asarray(self.probabilities(row) @ self.prior, dtype=np.float64)


@dataclass(frozen=True)
class CostModel:
    """Per-model cost estimate ``base + per_token * estimate_tokens(prompt)`` in US dollars."""

    base: FloatArray
    per_token: FloatArray

    def estimate(self, prompt: str) -> FloatArray:
        """Estimated cost of each model for ``prompt``."""
        return np.asarray(
            np.maximum(self.base + self.per_token * estimate_tokens(prompt), 0.0), dtype=np.float64
        )


@dataclass(frozen=True)
class CascadeVerifier:
    """Logistic regression over :func:`answer_cues`: P(cheap answer is right)."""

    coef: FloatArray
    intercept: float
    mean: FloatArray
    scale: FloatArray
    threshold: float
    thresholds: Mapping[str, float]

    def p_correct(self, prompt: str, response: str) -> float:
        """Probability that ``response`` (the cheap model's) is right."""
        x = (np.asarray(answer_cues(prompt, response)) - self.mean) / self.scale
        return float(sigmoid(np.asarray(x @ self.coef + self.intercept)))


@dataclass(frozen=True)
class SourceHead:
    """Everything learned for one source; :meth:`score` is pure and needs only numpy."""

    source: str
    kind: str
    models: tuple[str, ...]
    space: FeatureSpace
    coef: FloatArray  # (features, models)
    intercept: FloatArray  # (models,)
    category: CategoryPrior | None
    cost: CostModel
    quality_target: float
    threshold: float | None = None
    thresholds: Mapping[str, float] | None = None
    lam: float | None = None
    cascade: CascadeVerifier | None = None
    calibration: str | None = None  # how threshold/lambda were found; None: out-of-fold, full rows
    lambdas: Mapping[str, float] | None = None  # like ``thresholds``, for many-model heads
    target: str | None = None  # the stored calibration in use; None: the trained quality_target

    def __post_init__(self) -> None:
        if self.kind not in (PAIR, MULTI):
            raise ValueError(f"head kind must be {PAIR!r} or {MULTI!r}, not {self.kind!r}")
        if self.kind == PAIR and len(self.models) != 2:
            raise ValueError("a pair head needs exactly two models (cheap, strong)")
        if self.coef.shape != (self.space.size, len(self.models)):
            raise ValueError(
                f"coef shape {self.coef.shape} != ({self.space.size}, {len(self.models)})"
            )

    @property
    def trained_target(self) -> str:
        """The target the head was trained for (its ``threshold``/``lam``), as text."""
        return target_name(self.quality_target, OF_STRONG)

    def stored_targets(self) -> tuple[str, ...]:
        """Every target a calibration is stored for, the trained one first.

        Pair heads store thresholds for :data:`STORED_TARGETS` (and their cascade verifier
        its own for the same targets); many-model heads store a ``lambda`` for each of them
        since the ``lambdas`` manifest key was added (older artifacts: the trained one only).
        """
        labels = self.thresholds if self.kind == PAIR else self.lambdas
        out = [self.trained_target]
        for label in labels or {}:
            name = STORED_TARGETS.get(label)
            cascade_has_it = self.cascade is None or label in self.cascade.thresholds
            if name is not None and name not in out and cascade_has_it:
                out.append(name)
        return tuple(out)

    def at_target(self, target: str) -> SourceHead:
        """This head deciding at the stored calibration for ``target`` (e.g. ``"80% of gap"``):
        its threshold (and cascade threshold) or ``lambda`` replaced by the stored ones.

        Raises :class:`QualityTargetError` listing the stored targets when there is none. Only
        a head as loaded (deciding at its trained target) can be moved to another target.
        """
        if self.target is not None:
            raise ValueError(f"source {self.source!r} is already set to {self.target!r}")
        if target == self.trained_target:
            return replace(self, target=target)
        if target not in self.stored_targets():
            stored = ", ".join(
                f'"{t}"' + (" (trained)" if t == self.trained_target else "")
                for t in self.stored_targets()
            )
            hint = ""
            if self.kind == MULTI and not self.lambdas:
                hint = "; retrain the artifact (quorum router train) to store the others"
            raise QualityTargetError(
                f'"{target}" has no calibration stored for source {self.source!r} '
                f"(stored: {stored}; N% of gap is N% of the way from the cheapest model's "
                f"quality to the premium's){hint}"
            )
        label = next(k for k, v in STORED_TARGETS.items() if v == target)
        if self.kind == PAIR:
            cascade = self.cascade
            if cascade is not None:
                cascade = replace(cascade, threshold=cascade.thresholds[label])
            return replace(
                self,
                threshold=(self.thresholds or {})[label],
                cascade=cascade,
                target=target,
            )
        return replace(self, lam=(self.lambdas or {})[label], target=target)

    def expected_from_row(self, row: SparseRow) -> FloatArray:
        """Per-model expected score from a feature row."""
        p = sigmoid(row.dot(self.coef) + self.intercept)
        if self.category is None:
            return p
        w = self.category.weight
        return np.asarray((1.0 - w) * p + w * self.category.expected(row), dtype=np.float64)

    def expected_scores(self, prompt: str) -> FloatArray:
        """Per-model expected score (models cheapest first)."""
        return self.expected_from_row(self.space.transform(prompt))

    def choose(self, expected: FloatArray, costs: FloatArray) -> int:
        """Index of the model to use given expected scores and costs."""
        if self.kind == PAIR:
            gain = float(expected[1] - expected[0])
            return 1 if self.threshold is not None and gain >= self.threshold else 0
        lam = self.lam if self.lam is not None else 0.0
        return int(np.argmax(expected - lam * costs))

    def score(self, prompt: str) -> RouterScores:
        """Score ``prompt``: per-model expectations, costs and the recommended model."""
        expected = self.expected_scores(prompt)
        costs = self.cost.estimate(prompt)
        pick = self.choose(expected, costs)
        return RouterScores(
            source=self.source,
            models=self.models,
            expected_scores=tuple(float(x) for x in expected),
            expected_costs_usd=tuple(float(x) for x in costs),
            gains=tuple(float(x - expected[0]) for x in expected),
            recommended=self.models[pick],
            threshold=self.threshold,
            quality_target=self.quality_target,
            target=self.target or self.trained_target,
        )

    def cascade_gain(self, prompt: str, response: str) -> float:
        """``E[strong] - P(cheap answer right)``: the cascade's escalation score."""
        if self.cascade is None:
            raise ValueError(f"source {self.source!r} has no cascade verifier")
        strong = float(self.expected_scores(prompt)[-1])
        return strong - self.cascade.p_correct(prompt, response)

    def verify(self, prompt: str, response: str) -> CascadeDecision:
        """Whether a cascade should escalate after the cheap model answered ``response``."""
        if self.cascade is None:
            raise ValueError(f"source {self.source!r} has no cascade verifier")
        p_cheap = self.cascade.p_correct(prompt, response)
        gain = float(self.expected_scores(prompt)[-1]) - p_cheap
        return CascadeDecision(
            escalate=gain >= self.cascade.threshold,
            p_cheap_correct=p_cheap,
            gain=gain,
            threshold=self.cascade.threshold,
        )
