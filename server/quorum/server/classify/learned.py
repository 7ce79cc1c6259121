"""The learned router behind the classifier interface, and its cascade verifier.

The router (trained by ``quorum router train`` on real per-prompt results) scores each
prompt with the expected quality of every model in its training pool, cheapest first,
and recommends the cheapest that meets its calibrated quality target. Quorum's own
models differ from that pool, so the recommendation is read as a *difficulty*: the
cheapest pool model suffices → low, the dearest is needed → high, anything between →
medium. The planner then turns difficulty into a tier as usual.

Confidence is ``0.55 + margin`` (at most 0.95), the margin being how far the decision is
from flipping, in expected-quality units: for a two-model head the distance of the routing
score (the expected gain of the strong model) from its calibrated threshold; for a
many-model head the lead of the recommended model's utility ``E[m] - lambda * cost_m`` over
the best model that would give another difficulty. A close call is therefore below the
chain's ``confident_at`` (0.7 by default), so the chain still asks the embedding routes and
the LLM classifier when the router is unsure, and never below the planner's default
``ambiguous_below`` (0.5): the router's own doubt does not move a request up a tier.

The verifier reads a cheap model's answer (for sources whose head was trained on them)
and fails the cascade's gate when the stronger model is expected to do better.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

from quorum.server.classify.rules import RulesClassifier
from quorum.server.domain import Classification, Completion, Difficulty, GateCheck, RouteRequest

if TYPE_CHECKING:
    from quorum.server.learned.heads import RouterScores
    from quorum.server.learned.router import LearnedRouter


_BASE_CONFIDENCE = 0.55
_MAX_CONFIDENCE = 0.95


def decision_margin(scores: RouterScores, lam: float | None) -> float:
    """How far the router's recommendation is from changing the difficulty (quality units).

    Two models: ``|gain - threshold|``. Many models: the utility ``E[m] - lam * cost_m`` of
    the recommended model minus the best utility among models that would map to another
    difficulty (infinite when every model maps to the same one).
    """
    if scores.threshold is not None:
        gain = scores.gains[-1] if scores.gains else 0.0
        return abs(gain - scores.threshold)
    weight = lam if lam is not None else 0.0
    utility = [
        e - weight * c
        for e, c in zip(scores.expected_scores, scores.expected_costs_usd, strict=True)
    ]
    chosen = difficulty_from_scores(scores.models, scores.recommended)
    best = utility[scores.models.index(scores.recommended)]
    others = [
        u
        for model, u in zip(scores.models, utility, strict=True)
        if difficulty_from_scores(scores.models, model) is not chosen
    ]
    return best - max(others) if others else math.inf


def difficulty_from_scores(models: tuple[str, ...], recommended: str) -> Difficulty:
    """Where the recommended model sits in the pool (cheapest first) as a difficulty."""
    position = models.index(recommended) if recommended in models else len(models) - 1
    if position == 0:
        return Difficulty.LOW
    if position == len(models) - 1:
        return Difficulty.HIGH
    return Difficulty.MEDIUM


class LearnedClassifier:
    """Rules for the task; the learned router for the difficulty."""

    def __init__(
        self,
        router: LearnedRouter,
        *,
        source: str | None = None,
        rules: RulesClassifier | None = None,
    ) -> None:
        self._router = router
        self._source = source
        self._rules = rules or RulesClassifier()

    async def classify(self, request: RouteRequest) -> Classification:
        base = await self._rules.classify(request)
        scores = self._router.score(request.prompt_text, self._source)
        difficulty = difficulty_from_scores(scores.models, scores.recommended)
        gain = scores.gains[-1] if scores.gains else 0.0
        margin = decision_margin(scores, self._router.head(self._source).lam)
        confidence = min(_MAX_CONFIDENCE, _BASE_CONFIDENCE + max(0.0, margin))
        return replace(
            base,
            difficulty=difficulty,
            confidence=round(confidence, 3),
            classifier=f"{base.classifier}+learned",
            signals=(*base.signals, f"learned:{scores.source}:gain={gain:.3f}:margin={margin:.3f}"),
        )


class LearnedVerifier:
    """A gate check: escalate when the learned verifier doubts the cheap answer."""

    name = "learned_verifier"

    def __init__(self, router: LearnedRouter, source: str | None = None) -> None:
        self._router = router
        self._source = source

    def verify(self, request: RouteRequest, completion: Completion) -> GateCheck:
        decision = self._router.verify(request.prompt_text, completion.content, self._source)
        reason = (
            f"p(cheap answer right)={decision.p_cheap_correct:.2f}, expected gain of "
            f"escalating {decision.gain:.2f} vs threshold {decision.threshold:.2f}"
        )
        return GateCheck(self.name, not decision.escalate, reason)
