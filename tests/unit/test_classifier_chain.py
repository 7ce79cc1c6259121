"""The classifier chain: an "unknown" is ambiguous, an LLM timeout never lowers difficulty.

The semantic routes run on a small keyword encoder here (no MiniLM), so the tests are exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from quorum.server.catalog import build_catalog
from quorum.server.classify.chain import UNKNOWN_CONFIDENCE, ChainClassifier
from quorum.server.classify.embedding import Array, SemanticRoutes
from quorum.server.classify.llm import LLMClassifier
from quorum.server.classify.rules import TASKS
from quorum.server.config import parse_config
from quorum.server.domain import (
    Classification,
    Difficulty,
    ExecutionPlan,
    Message,
    Role,
    RouteRequest,
    Strategy,
)
from quorum.server.errors import ConfigError
from quorum.server.plan import plan
from quorum.server.policy import build_policy
from quorum.server.state import StateSnapshot
from tests.conftest import sim_config

_AXES = ("contract", "nda", "clause", "indemnification")


class KeywordEncoder:
    """Texts to unit vectors: one axis per legal keyword, one for everything else."""

    def encode(self, texts: Sequence[str]) -> Array:
        rows = []
        for text in texts:
            lowered = text.lower()
            row = [float(word in lowered) for word in _AXES]
            row.append(0.0 if any(row) else 1.0)
            rows.append(row)
        matrix = np.asarray(rows, dtype=np.float32)
        unit: Array = np.asarray(matrix / np.linalg.norm(matrix, axis=1, keepdims=True))
        return unit

    async def aencode(self, texts: Sequence[str]) -> Array:
        return self.encode(texts)


LEGAL = SemanticRoutes(
    KeywordEncoder(),
    {
        "legal": [
            "Review this contract clause for liability",
            "Is this NDA enforceable?",
            "Draft an indemnification clause for a supplier agreement",
        ]
    },
)
UNSURE_FOR_RULES = "Blorp the frobnicator quickly."  # no task signal: rules say 0.55


def _request(text: str) -> RouteRequest:
    return RouteRequest("r", (Message(Role.USER, text),))


def _plan(classification: Classification, **routing: Any) -> ExecutionPlan:
    data = sim_config()
    data["routing"].update(routing)
    config = parse_config(data)
    return plan(
        _request(UNSURE_FOR_RULES),
        classification,
        build_catalog(config),
        build_policy(config),
        StateSnapshot(),
    )


def _codes(decided: ExecutionPlan) -> list[str]:
    return [r.code for r in decided.reasons]


class Answers:
    """A stand-in LLM classifier with a fixed answer; counts its calls."""

    def __init__(self, answer: Classification) -> None:
        self.answer = answer
        self.calls = 0

    async def classify(self, request: RouteRequest) -> Classification:
        self.calls += 1
        return self.answer


class Fixed:
    """A first step that always answers ``answer`` (e.g. a learned classifier)."""

    def __init__(self, answer: Classification) -> None:
        self.answer = answer

    async def classify(self, request: RouteRequest) -> Classification:
        return self.answer


# ---- "unknown" is ambiguous -------------------------------------------------------------


async def test_an_unknown_semantic_task_is_ambiguous_and_moves_one_tier_up() -> None:
    result = await ChainClassifier(tasks=LEGAL).classify(_request(UNSURE_FOR_RULES))
    assert any(s.startswith("semantic_task:unknown:") for s in result.signals)
    assert result.confidence == UNKNOWN_CONFIDENCE
    assert result.difficulty is Difficulty.LOW
    decided = _plan(result)
    assert "AMBIGUOUS_UP" in _codes(decided)
    assert decided.candidates[0].tier == "mid"  # low → cheap, ambiguous → one tier up


async def test_a_matched_semantic_task_is_not_ambiguous() -> None:
    result = await ChainClassifier(tasks=LEGAL).classify(_request("Is this NDA clause valid?"))
    assert (result.task, result.classifier) == ("legal", "rules+embedding")
    assert result.confidence >= 0.7
    decided = _plan(result)
    assert "AMBIGUOUS_UP" not in _codes(decided)
    assert decided.candidates[0].tier == "cheap"


async def test_a_confident_llm_answer_replaces_the_unknown() -> None:
    llm = Answers(Classification("chat", Difficulty.LOW, 0.9, "llm"))
    result = await ChainClassifier(tasks=LEGAL, llm=llm).classify(_request(UNSURE_FOR_RULES))
    assert llm.calls == 1 and (result.classifier, result.confidence) == ("llm", 0.9)
    assert "semantic_task:unknown:0.00" in result.signals
    assert "AMBIGUOUS_UP" not in _codes(_plan(result))


@pytest.mark.parametrize("note", ["llm-malformed", "llm-error", "llm-timeout"])
async def test_an_unknown_stays_ambiguous_when_the_llm_gives_no_answer(note: str) -> None:
    llm = Answers(Classification("chat", Difficulty.MEDIUM, 0.55, note))
    result = await ChainClassifier(tasks=LEGAL, llm=llm).classify(_request(UNSURE_FOR_RULES))
    assert llm.calls == 1 and note in result.signals
    assert result.confidence == UNKNOWN_CONFIDENCE
    decided = _plan(result)
    if result.difficulty is Difficulty.LOW:
        assert "AMBIGUOUS_UP" in _codes(decided)
    else:  # a timeout made it medium: auto cascades from the cheapest tier, gated
        assert (note, decided.strategy) == ("llm-timeout", Strategy.CASCADE)


async def test_an_unknown_agent_is_ambiguous_when_the_task_is_unsure_too() -> None:
    llm = Answers(Classification("chat", Difficulty.LOW, 0.9, "llm"))
    chain = ChainClassifier(agents=LEGAL)  # here "legal" is an agent's examples
    result = await chain.classify(_request(UNSURE_FOR_RULES))
    assert any(s.startswith("agent:unknown:") for s in result.signals)
    assert result.confidence == UNKNOWN_CONFIDENCE
    assert "AMBIGUOUS_UP" in _codes(_plan(result))
    # ... and it is what the LLM classifier is there for.
    asked = await ChainClassifier(agents=LEGAL, llm=llm).classify(_request(UNSURE_FOR_RULES))
    assert llm.calls == 1 and (asked.classifier, asked.confidence) == ("llm", 0.9)


@pytest.mark.parametrize("task_routes", [None, LEGAL])
async def test_a_confident_task_that_no_agent_fits_is_no_agents_and_stays_sure(
    task_routes: SemanticRoutes | None,
) -> None:
    llm = Answers(Classification("chat", Difficulty.HIGH, 0.9, "llm"))
    chain = ChainClassifier(tasks=task_routes, agents=LEGAL, llm=llm)
    rules = await ChainClassifier().classify(_request("What is 17 * 23?"))
    result = await chain.classify(_request("What is 17 * 23?"))
    assert rules.confidence >= 0.7
    assert (result.agent, result.task, result.confidence) == ("", rules.task, rules.confidence)
    assert any(s.startswith("agent:none:") for s in result.signals)
    assert llm.calls == 0
    assert "AMBIGUOUS_UP" not in _codes(_plan(result))
    # A task route that matches makes the task sure as well.
    helper = SemanticRoutes(KeywordEncoder(), {"helper": ["Tell me a story"]})
    legal = await ChainClassifier(tasks=LEGAL, agents=helper).classify(
        _request("Is this NDA clause valid?")
    )
    assert (legal.task, legal.agent) == ("legal", "")
    assert legal.confidence >= 0.7 and "AMBIGUOUS_UP" not in _codes(_plan(legal))


async def test_rules_without_a_signal_stay_on_the_cheap_tier_by_default() -> None:
    # "hi there" and friends: no task signal, rules' lowest confidence 0.55 — unsure enough for
    # the chain to ask the embedding routes (below confident_at 0.7) but not ambiguous for the
    # planner (ambiguous_below 0.5): trivial chat must not move up a tier.
    for text in ("hi there", UNSURE_FOR_RULES):
        result = await ChainClassifier().classify(_request(text))
        assert (result.classifier, result.confidence) == ("rules", 0.55)
        decided = _plan(result)
        assert "AMBIGUOUS_UP" not in _codes(decided)
        assert decided.candidates[0].tier == "cheap"


async def test_ambiguous_below_is_configurable() -> None:
    rules = await ChainClassifier().classify(_request(UNSURE_FOR_RULES))
    assert "AMBIGUOUS_UP" in _codes(_plan(rules, ambiguous_below=0.6))
    unknown = await ChainClassifier(tasks=LEGAL).classify(_request(UNSURE_FOR_RULES))
    assert "AMBIGUOUS_UP" not in _codes(_plan(unknown, ambiguous_below=0.0))  # 0: never
    assert build_policy(parse_config(sim_config())).ambiguous_below == 0.5


@pytest.mark.parametrize("value", [-0.1, 1.5, "high"])
def test_ambiguous_below_is_validated(value: object) -> None:
    data = sim_config()
    data["routing"]["ambiguous_below"] = value
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    (problem,) = info.value.problems
    assert problem.startswith("routing.ambiguous_below:")


# ---- an LLM timeout never makes a request look easier -----------------------------------


async def _never_in_time(messages: tuple[Message, ...], timeout: float) -> str:
    await asyncio.sleep(1)
    return "{}"


def _slow_llm() -> LLMClassifier:
    return LLMClassifier(_never_in_time, tasks=TASKS, timeout_s=0.02)


async def test_a_timeout_keeps_a_high_difficulty_the_rules_found() -> None:
    text = "Prove it step by step."  # high by rules, unsure of the task
    rules = await ChainClassifier().classify(_request(text))
    assert rules.difficulty is Difficulty.HIGH and rules.confidence < 0.7
    result = await ChainClassifier(llm=_slow_llm()).classify(_request(text))
    assert result.difficulty is Difficulty.HIGH
    assert result.signals[-2:] == ("llm-timeout", "timeout_difficulty:high->high")


async def test_a_timeout_raises_a_low_difficulty_to_medium() -> None:
    result = await ChainClassifier(llm=_slow_llm()).classify(_request(UNSURE_FOR_RULES))
    assert result.difficulty is Difficulty.MEDIUM
    assert result.signals[-2:] == ("llm-timeout", "timeout_difficulty:low->medium")


async def test_a_timeout_judges_by_the_chains_first_step_not_the_llms_own_rules() -> None:
    # The first step (a learned classifier, say) found high; the LLM classifier's own rules
    # fallback would say low: the chain keeps high.
    first = Fixed(Classification("chat", Difficulty.HIGH, 0.6, "rules+learned"))
    result = await ChainClassifier(rules=first, llm=_slow_llm()).classify(_request("hi"))
    assert (result.difficulty, result.classifier) == (Difficulty.HIGH, "rules+learned")
    assert "timeout_difficulty:high->high" in result.signals
