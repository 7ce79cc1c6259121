"""The planner as tables: pure inputs, an ExecutionPlan out."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from quorum.server.breakers import ProviderHealth
from quorum.server.catalog import Catalog, build_catalog
from quorum.server.config import parse_config
from quorum.server.domain import (
    BreakerState,
    Capability,
    Classification,
    ContentPart,
    Difficulty,
    Hints,
    ImagePart,
    Message,
    Priority,
    Role,
    RouteRequest,
    Sensitivity,
    Strategy,
)
from quorum.server.errors import NoCandidate, StrategyInfeasible
from quorum.server.plan import plan
from quorum.server.policy import RoutingPolicy, build_policy
from quorum.server.state import StateSnapshot
from tests.conftest import sim_config

CONFIG = parse_config(sim_config())
CATALOG: Catalog = build_catalog(CONFIG)
POLICY: RoutingPolicy = build_policy(CONFIG)


def _request(text: str = "hello", **hints: Any) -> RouteRequest:
    return RouteRequest("r1", (Message(Role.USER, text),), hints=Hints(**hints))


def _cls(difficulty: Difficulty = Difficulty.LOW, confidence: float = 0.9) -> Classification:
    return Classification("chat", difficulty, confidence, "rules")


def _models(
    request: RouteRequest,
    classification: Classification | None = None,
    snapshot: StateSnapshot | None = None,
) -> list[str]:
    decided = plan(request, classification or _cls(), CATALOG, POLICY, snapshot or StateSnapshot())
    return [c.model for c in decided.candidates]


@pytest.mark.parametrize(
    ("difficulty", "first"),
    [(Difficulty.LOW, "flash"), (Difficulty.MEDIUM, "mid"), (Difficulty.HIGH, "frontier")],
)
def test_difficulty_picks_tier(difficulty: Difficulty, first: str) -> None:
    assert _models(_request(), _cls(difficulty))[0] == first


@pytest.mark.parametrize(
    ("priority", "difficulty", "first"),
    [
        (Priority.LATENCY, Difficulty.HIGH, "flash"),
        (Priority.COST, Difficulty.HIGH, "flash"),
        (Priority.QUALITY, Difficulty.LOW, "frontier"),
        (Priority.BALANCED, Difficulty.MEDIUM, "mid"),
    ],
)
def test_priority_overrides_difficulty(
    priority: Priority, difficulty: Difficulty, first: str
) -> None:
    assert _models(_request(priority=priority), _cls(difficulty))[0] == first


def test_fallbacks_go_up_then_down_within_limit() -> None:
    # target mid; then more capable (frontier), then cheaper ones; cut to 3 attempts.
    assert _models(_request(), _cls(Difficulty.MEDIUM)) == ["mid", "frontier", "flash"]


def test_same_tier_alternatives_come_first() -> None:
    assert _models(_request(), _cls(Difficulty.LOW))[:2] == ["flash", "flash-b"]


def test_forced_model_is_primary() -> None:
    decided = plan(_request(model="frontier"), _cls(), CATALOG, POLICY, StateSnapshot())
    assert decided.candidates[0].model == "frontier"
    assert decided.reasons[-1].code == "FORCED_MODEL" or any(
        r.code == "FORCED_MODEL" for r in decided.reasons
    )


def test_forced_tier() -> None:
    assert _models(_request(tier="premium"))[0] == "frontier"


def test_use_case_tier() -> None:
    assert _models(_request(use_case="legal_review"))[0] == "frontier"
    assert _models(_request(use_case="autocomplete"), _cls(Difficulty.HIGH))[0] == "flash"


def test_ambiguous_classification_moves_up() -> None:
    decided = plan(_request(), _cls(Difficulty.LOW, 0.3), CATALOG, POLICY, StateSnapshot())
    assert decided.candidates[0].model == "mid"
    assert any(r.code == "AMBIGUOUS_UP" for r in decided.reasons)


def test_required_capability_filters() -> None:
    models = _models(_request(required_capabilities=frozenset({Capability.VISION})))
    assert set(models) <= {"mid", "frontier"}
    assert models[0] == "mid"


def test_image_part_implies_vision() -> None:
    request = RouteRequest(
        "r",
        (
            Message(
                Role.USER,
                "what is this?",
                parts=(ContentPart(image=ImagePart(url="https://x/y.png")),),
            ),
        ),
    )
    assert "flash" not in _models(request)


def test_json_schema_implies_capability() -> None:
    from quorum.server.domain import GenerationParams, ResponseFormat, ResponseFormatType

    request = replace(
        _request(),
        params=GenerationParams(
            response_format=ResponseFormat(ResponseFormatType.JSON_SCHEMA, '{"type":"object"}')
        ),
    )
    assert "mid" not in _models(request, _cls(Difficulty.MEDIUM))


def test_cost_ceiling_filters_and_explains() -> None:
    decided = plan(
        _request(max_cost_usd=0.001), _cls(Difficulty.HIGH), CATALOG, POLICY, StateSnapshot()
    )
    assert "frontier" not in [c.model for c in decided.candidates]
    assert any(r.code == "FILTERED" and "ceiling" in r.message for r in decided.reasons)


def test_nothing_eligible_raises_no_candidate() -> None:
    with pytest.raises(NoCandidate) as info:
        plan(_request(max_cost_usd=0.0), _cls(), CATALOG, POLICY, StateSnapshot())
    assert "ceiling" in info.value.message


def test_restricted_data_only_to_cleared_models() -> None:
    with pytest.raises(NoCandidate) as info:
        plan(_request(sensitivity=Sensitivity.RESTRICTED), _cls(), CATALOG, POLICY, StateSnapshot())
    assert "restricted" in info.value.message


def test_open_breaker_moves_provider_last() -> None:
    snapshot = StateSnapshot(providers={"sim": ProviderHealth(BreakerState.OPEN, 5, 0.0)})
    models = _models(_request(), _cls(Difficulty.LOW), snapshot)
    assert models[0] == "flash-b"
    decided = plan(_request(), _cls(), CATALOG, POLICY, snapshot)
    assert any(r.code == "UNHEALTHY_LAST" for r in decided.reasons)


def test_cost_estimate_range() -> None:
    decided = plan(_request(), _cls(Difficulty.MEDIUM), CATALOG, POLICY, StateSnapshot())
    assert 0 < decided.estimated_cost_min_usd <= decided.estimated_cost_max_usd


def test_forced_unavailable_strategy_is_refused_clearly() -> None:
    with pytest.raises(StrategyInfeasible):
        plan(_request(strategy=Strategy.CONSENSUS_JUDGE), _cls(), CATALOG, POLICY, StateSnapshot())


def test_plan_is_pure() -> None:
    request, cls = _request(), _cls(Difficulty.MEDIUM)
    assert plan(request, cls, CATALOG, POLICY, StateSnapshot()) == plan(
        request, cls, CATALOG, POLICY, StateSnapshot()
    )
