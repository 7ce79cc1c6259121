"""The learned classifier's confidence: how far its decision is from flipping.

A close call must leave the chain unsure (below ``confident_at``) so it still asks the
embedding routes and the LLM classifier — for many-model heads too, which used to claim a
fixed 0.7 whatever the scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from quorum.server.classify.chain import ChainClassifier
from quorum.server.classify.learned import LearnedClassifier, decision_margin
from quorum.server.domain import Classification, Difficulty, Message, Role, RouteRequest
from quorum.server.learned.heads import RouterScores
from quorum.server.learned.router import LearnedRouter
from quorum.server.learned.training import FittedHead

Trained = tuple[LearnedRouter, dict[str, FittedHead]]
MODELS = ("tiny", "small", "large")


def _multi(expected: tuple[float, ...], costs: tuple[float, ...] | None = None) -> RouterScores:
    costs = costs or tuple(0.0 for _ in expected)
    models = MODELS if len(expected) == 3 else tuple(f"m{i}" for i in range(len(expected)))
    utility = [e - 10.0 * c for e, c in zip(expected, costs, strict=True)]
    pick = utility.index(max(utility))
    return RouterScores(
        source="synth-multi",
        models=models,
        expected_scores=expected,
        expected_costs_usd=costs,
        gains=tuple(e - expected[0] for e in expected),
        recommended=models[pick],
        threshold=None,
        quality_target=0.95,
    )


def test_pair_margin_is_the_distance_from_the_threshold() -> None:
    scores = RouterScores(
        source="p",
        models=("weak", "strong"),
        expected_scores=(0.6, 0.75),
        expected_costs_usd=(0.0, 0.0),
        gains=(0.0, 0.15),
        recommended="strong",
        threshold=0.1,
        quality_target=0.95,
    )
    assert decision_margin(scores, None) == pytest.approx(0.05)


def test_multi_margin_is_the_lead_over_the_best_model_of_another_difficulty() -> None:
    # Utilities (lambda 10): 0.5 - 0.0, 0.7 - 0.1, 0.9 - 0.25 → large (high) by 0.05 over small.
    scores = _multi((0.5, 0.7, 0.9), (0.0, 0.01, 0.025))
    assert scores.recommended == "large"
    assert decision_margin(scores, 10.0) == pytest.approx(0.05)
    # Without lambda only quality counts: large by 0.2.
    assert decision_margin(_multi((0.5, 0.7, 0.9)), None) == pytest.approx(0.2)


def test_multi_margin_skips_models_of_the_same_difficulty() -> None:
    # m1 and m2 are both medium: the near tie between them does not make the call close.
    scores = _multi((0.2, 0.80, 0.79, 0.3))
    assert scores.recommended == "m1"
    assert decision_margin(scores, 0.0) == pytest.approx(0.5)


def test_a_pool_of_one_difficulty_is_never_a_close_call() -> None:
    scores = RouterScores("s", ("only",), (0.5,), (0.0,), (0.0,), "only", None, 0.95)
    assert decision_margin(scores, 0.0) == math.inf


@dataclass(frozen=True)
class Scripted(LearnedRouter):
    """The trained router's heads, but ``score`` answers with ``scripted``."""

    scripted: RouterScores | None = None

    def score(self, prompt: str, source: str | None = None) -> RouterScores:
        assert self.scripted is not None
        return self.scripted


class CountingLLM:
    def __init__(self) -> None:
        self.calls = 0

    async def classify(self, request: RouteRequest) -> Classification:
        self.calls += 1
        return Classification("chat", Difficulty.HIGH, 0.9, "llm")


def _request(text: str = "Blorp the frobnicator quickly.") -> RouteRequest:
    return RouteRequest("r", (Message(Role.USER, text),))


@pytest.mark.parametrize(
    ("expected", "confidence", "asks_llm"),
    [
        ((0.50, 0.60, 0.62), 0.57, True),  # large by 0.02: a close call
        ((0.10, 0.20, 0.90), 0.95, False),  # large by 0.7: sure
    ],
)
async def test_a_close_multi_head_call_lets_the_chain_ask_the_llm(
    trained: Trained, expected: tuple[float, ...], confidence: float, asks_llm: bool
) -> None:
    router = Scripted(trained[0].heads, "synth-multi", scripted=_multi(expected))
    learned = LearnedClassifier(router, source="synth-multi")
    alone = await learned.classify(_request())
    assert (alone.difficulty, alone.confidence) == (Difficulty.HIGH, confidence)
    llm = CountingLLM()
    result = await ChainClassifier(rules=learned, llm=llm).classify(_request())
    assert llm.calls == (1 if asks_llm else 0)
    assert result.classifier == ("llm" if asks_llm else "rules+learned")


@pytest.mark.parametrize("source", ["synth-pair", "synth-multi"])
async def test_confidence_follows_the_margin_of_the_trained_heads(
    trained: Trained, source: str
) -> None:
    router, _ = trained
    learned = LearnedClassifier(router, source=source)
    seen = set()
    for text in ("Task 3: prove the theorem carefully now", "hello there", "Question 7: why?"):
        result = await learned.classify(_request(text))
        margin = decision_margin(router.score(text, source), router.head(source).lam)
        assert result.confidence == round(min(0.95, 0.55 + margin), 3)
        assert 0.55 <= result.confidence <= 0.95
        assert any(s.startswith(f"learned:{source}:gain=") for s in result.signals)
        seen.add(result.confidence)
    assert len(seen) > 1  # scores, not a constant
