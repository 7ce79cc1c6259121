"""The cascade planner and the caller's hints: a forced model, and the cost ceiling."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from quorum.server.domain import Difficulty, Priority, Strategy
from quorum.server.errors import StrategyInfeasible
from quorum.server.policy import UseCase
from tests.unit.test_plan import POLICY, _cls, _codes, _plan, _request, _stages

MULTI_CALL = (Strategy.CASCADE, Strategy.CONSENSUS_MAJORITY, Strategy.CONSENSUS_JUDGE)
REFUSAL = {
    Strategy.CASCADE: "a forced model cannot be escalated from or to; drop hints.model",
    Strategy.CONSENSUS_MAJORITY: "a forced model cannot be outvoted; drop hints.model",
    Strategy.CONSENSUS_JUDGE: "a forced model cannot be outvoted; drop hints.model",
}

# ---- a forced model: refused when the caller forces the strategy, else single -------


@pytest.mark.parametrize("strategy", MULTI_CALL)
@pytest.mark.parametrize(
    "hints",
    [
        {"model": "frontier"},
        {"model": "flash"},
        # The refusal names hints.model even where the strategy fails for another reason
        # too (a cascade from the top tier has nowhere to escalate to).
        {"model": "frontier", "tier": "premium"},
    ],
)
def test_a_forced_strategy_with_a_forced_model_is_refused(
    strategy: Strategy, hints: dict[str, Any]
) -> None:
    with pytest.raises(StrategyInfeasible) as info:
        _plan(_request(strategy=strategy, **hints), _cls(Difficulty.MEDIUM))
    assert info.value.message == (
        f"strategy {strategy.value} cannot run for this request: {REFUSAL[strategy]}"
    )
    assert info.value.metadata == {"strategy": strategy.value}


@pytest.mark.parametrize("strategy", MULTI_CALL)
@pytest.mark.parametrize("source", ["use_case", "default"])
def test_a_policy_strategy_with_a_forced_model_runs_single(strategy: Strategy, source: str) -> None:
    if source == "use_case":
        policy = replace(POLICY, use_cases={"uc": UseCase("uc", strategy=strategy)})
        hints: dict[str, Any] = {"use_case": "uc"}
    else:
        policy = replace(POLICY, default_strategy=strategy)
        hints = {}
    assert _plan(_request(**hints), _cls(Difficulty.MEDIUM), policy=policy).strategy is strategy
    decided = _plan(_request(model="frontier", **hints), _cls(Difficulty.MEDIUM), policy=policy)
    assert decided.strategy is Strategy.SINGLE
    assert decided.candidates[0].model == "frontier"
    (skipped,) = [r for r in decided.reasons if r.code == "STRATEGY_SKIPPED"]
    assert skipped.message.endswith(REFUSAL[strategy])


@pytest.mark.parametrize(
    ("hints", "difficulty"),
    [
        ({"priority": Priority.COST}, Difficulty.MEDIUM),  # auto would cascade
        ({}, Difficulty.MEDIUM),  # auto would cascade
        ({"critical": True}, Difficulty.HIGH),  # auto would vote
    ],
)
def test_auto_with_a_forced_model_runs_single(
    hints: dict[str, Any], difficulty: Difficulty
) -> None:
    assert _plan(_request(**hints), _cls(difficulty)).strategy is not Strategy.SINGLE
    decided = _plan(_request(model="mid", **hints), _cls(difficulty))
    assert decided.strategy is Strategy.SINGLE
    assert decided.candidates[0].model == "mid"
    assert "AUTO_SINGLE" in _codes(decided)
    assert "STRATEGY_SKIPPED" not in _codes(decided)


# ---- the cost ceiling bounds the plan's whole estimate -----------------------------

# Costs at medium difficulty: flash 0.0001606, flash-b 0.0002409, mid 0.0012848,
# frontier 0.01003; the whole cascade 0.0117163.
CEILINGS = [0.001446, 0.0015, 0.0016, 0.0016863, 0.0017, 0.002, 0.005, 0.0104, 0.0114754]
CEILINGS += [0.0115, 0.0117, 0.0117163, 0.012, 0.1]


@pytest.mark.parametrize("ceiling", CEILINGS)
@pytest.mark.parametrize(
    "hints",
    [{"strategy": Strategy.CASCADE}, {"priority": Priority.COST}, {}],
    ids=["forced", "auto-cost", "auto-medium"],
)
def test_a_cascade_never_exceeds_the_cost_ceiling(ceiling: float, hints: dict[str, Any]) -> None:
    decided = _plan(_request(max_cost_usd=ceiling, **hints), _cls(Difficulty.MEDIUM))
    assert decided.strategy is Strategy.CASCADE
    assert decided.estimated_cost_max_usd <= ceiling
    costs = [c.estimated_cost_usd for c in decided.candidates]
    assert decided.estimated_cost_max_usd == pytest.approx(sum(costs))
    # Tiers come before same-tier failover: a cheap cascade keeps two tiers.
    assert len(decided.stages) >= 2


@pytest.mark.parametrize(
    ("ceiling", "stages", "cut"),
    [
        # flash + mid fit; flash-b as well would not: the failover is left out.
        (0.0015, [["flash"], ["mid"]], "same-tier failover flash-b left out"),
        (0.002, [["flash", "flash-b"], ["mid"]], ""),
        # Every first model fits, with flash-b the whole cascade would not.
        (0.0117, [["flash"], ["mid"], ["frontier"]], "same-tier failover flash-b left out"),
        (0.0117163, [["flash", "flash-b"], ["mid"], ["frontier"]], ""),
    ],
)
def test_the_ceiling_leaves_out_failover_before_a_tier(
    ceiling: float, stages: list[list[str]], cut: str
) -> None:
    decided = _plan(
        _request(strategy=Strategy.CASCADE, max_cost_usd=ceiling), _cls(Difficulty.MEDIUM)
    )
    assert [models for _, models in _stages(decided)] == stages
    cuts = [r.message for r in decided.reasons if r.code == "CEILING_CUT"]
    if cut:
        (message,) = cuts
        assert message.startswith(cut) and message.endswith(f"${ceiling:.6f}")
    else:
        assert cuts == []


def test_the_ceiling_drops_the_dearest_tier_when_the_first_models_do_not_fit() -> None:
    # frontier fits alone, but not after flash and mid.
    decided = _plan(
        _request(strategy=Strategy.CASCADE, max_cost_usd=0.0105), _cls(Difficulty.MEDIUM)
    )
    assert _stages(decided) == [("tier", ["flash", "flash-b"]), ("tier", ["mid"])]
    assert "tier premium dropped" in " ".join(r.message for r in decided.reasons)
    assert decided.estimated_cost_max_usd <= 0.0105


@pytest.mark.parametrize("per_tier", [1, 2, 3])
@pytest.mark.parametrize("cap", [2, 3, 8])
@pytest.mark.parametrize("ceiling", [0.0015, 0.002, 0.0117, 0.05])
def test_the_ceiling_holds_whatever_the_failover_and_call_cap(
    per_tier: int, cap: int, ceiling: float
) -> None:
    cascade = replace(POLICY.cascade, models_per_tier=per_tier)
    policy = replace(POLICY, cascade=cascade, max_upstream_calls=cap)
    request = _request(strategy=Strategy.CASCADE, max_cost_usd=ceiling)
    decided = _plan(request, _cls(Difficulty.MEDIUM), policy=policy)
    assert decided.estimated_cost_max_usd <= ceiling
    assert len(decided.candidates) <= cap
