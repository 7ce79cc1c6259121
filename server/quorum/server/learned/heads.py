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

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from quorum.server.learned.data import estimate_tokens
from quorum.server.learned.tfidf import FeatureSpace, SparseRow
from quorum.server.learned.verifier import answer_cues

FloatArray = npt.NDArray[np.float64]

PAIR = "pair"
MULTI = "multi"


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
    ``recommended`` is the model chosen for the head's calibrated ``quality_target``.
    """

    source: str
    models: tuple[str, ...]
    expected_scores: tuple[float, ...]
    expected_costs_usd: tuple[float, ...]
    gains: tuple[float, ...]
    recommended: str
    threshold: float | None
    quality_target: float


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

    def __post_init__(self) -> None:
        if self.kind not in (PAIR, MULTI):
            raise ValueError(f"head kind must be {PAIR!r} or {MULTI!r}, not {self.kind!r}")
        if self.kind == PAIR and len(self.models) != 2:
            raise ValueError("a pair head needs exactly two models (cheap, strong)")
        if self.coef.shape != (self.space.size, len(self.models)):
            raise ValueError(
                f"coef shape {self.coef.shape} != ({self.space.size}, {len(self.models)})"
            )

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
