"""The planner as tables: pure inputs, an ExecutionPlan out."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from quorum.server.catalog import Catalog, build_catalog
from quorum.server.config import parse_config
from quorum.server.domain import (
    BreakerState,
    Capability,
    Classification,
    ContentPart,
    Difficulty,
    ExecutionPlan,
    GenerationParams,
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
from quorum.server.plan import estimate_tokens, is_probe, plan
from quorum.server.policy import RoutingPolicy, UseCase, build_policy
from quorum.server.resilience.breakers import ProviderHealth
from quorum.server.state import StateSnapshot
from tests.conftest import sim_config, with_model

CONFIG = parse_config(sim_config())
CATALOG: Catalog = build_catalog(CONFIG)
POLICY: RoutingPolicy = build_policy(CONFIG)


def _request(text: str = "hello", **hints: Any) -> RouteRequest:
    return RouteRequest("r1", (Message(Role.USER, text),), hints=Hints(**hints))


def _cls(difficulty: Difficulty = Difficulty.LOW, confidence: float = 0.9) -> Classification:
    return Classification("chat", difficulty, confidence, "rules")


def _plan(
    request: RouteRequest,
    classification: Classification | None = None,
    snapshot: StateSnapshot | None = None,
    policy: RoutingPolicy = POLICY,
) -> ExecutionPlan:
    return plan(request, classification or _cls(), CATALOG, policy, snapshot or StateSnapshot())


def _models(
    request: RouteRequest,
    classification: Classification | None = None,
    snapshot: StateSnapshot | None = None,
) -> list[str]:
    return [c.model for c in _plan(request, classification, snapshot).candidates]


def _codes(decided: ExecutionPlan) -> list[str]:
    return [r.code for r in decided.reasons]


@pytest.mark.parametrize(
    ("difficulty", "first"),
    [(Difficulty.LOW, "flash"), (Difficulty.MEDIUM, "mid"), (Difficulty.HIGH, "frontier")],
)
def test_difficulty_picks_tier(difficulty: Difficulty, first: str) -> None:
    assert _models(_request(strategy=Strategy.SINGLE), _cls(difficulty))[0] == first


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
    request = _request(priority=priority, strategy=Strategy.SINGLE)
    assert _models(request, _cls(difficulty))[0] == first


def test_fallbacks_go_up_then_down_within_limit() -> None:
    # target mid; then more capable (frontier), then cheaper ones; cut to 3 attempts.
    request = _request(strategy=Strategy.SINGLE)
    assert _models(request, _cls(Difficulty.MEDIUM)) == ["mid", "frontier", "flash"]


def test_same_tier_alternatives_come_first() -> None:
    assert _models(_request(), _cls(Difficulty.LOW))[:2] == ["flash", "flash-b"]


def test_forced_model_is_primary() -> None:
    decided = plan(_request(model="frontier"), _cls(), CATALOG, POLICY, StateSnapshot())
    assert decided.candidates[0].model == "frontier"
    assert decided.reasons[-1].code == "FORCED_MODEL" or any(
        r.code == "FORCED_MODEL" for r in decided.reasons
    )


def test_a_forced_model_fails_over_only_within_its_tier() -> None:
    # "failover stays within equivalent models": the other models of its tier, never a
    # cheaper (or dearer) one.
    decided = plan(_request(model="flash"), _cls(), CATALOG, POLICY, StateSnapshot())
    models = [c.model for s in decided.stages for c in s.candidates]
    assert models[0] == "flash"
    assert {CATALOG.models[m].tier for m in models} == {"cheap"}
    alone = plan(_request(model="frontier"), _cls(), CATALOG, POLICY, StateSnapshot())
    assert [c.model for s in alone.stages for c in s.candidates] == ["frontier"]
    assert any(r.code == "FORCED_MODEL_TIER" for r in alone.reasons)


def test_forced_tier() -> None:
    assert _models(_request(tier="premium"))[0] == "frontier"


def test_use_case_tier() -> None:
    assert _models(_request(use_case="legal_review"))[0] == "frontier"
    assert _models(_request(use_case="autocomplete"), _cls(Difficulty.HIGH))[0] == "flash"


def test_a_use_case_tier_is_answered_from_that_tier_only() -> None:
    # "Legal review → always the top tier": a failing frontier model must not hand the
    # request to a cheaper one; "autocomplete → always the lowest": nor to a dearer one.
    tiers = {m.name: m.tier for m in CATALOG.models.values()}
    legal = _models(_request(use_case="legal_review"))
    assert legal and {tiers[m] for m in legal} == {"premium"}
    fast = _models(_request(use_case="autocomplete"), _cls(Difficulty.HIGH))
    assert {tiers[m] for m in fast} == {"cheap"} and len(fast) >= 2
    decided = _plan(_request(use_case="legal_review"))
    assert any(r.code == "USE_CASE_TIER_ONLY" for r in decided.reasons)
    # A caller's own tier or model hint decides instead, and the plan says so.
    assert len({tiers[m] for m in _models(_request(use_case="legal_review", tier="mid"))}) > 1
    for pinned in (
        _request(use_case="legal_review", tier="mid"),
        _request(use_case="legal_review", model="mid"),
    ):
        (aside,) = [r for r in _plan(pinned).reasons if r.code == "USE_CASE_TIER_SET_ASIDE"]
        assert aside.message.startswith("use case legal_review answers from tier premium;")
    same = _plan(_request(use_case="legal_review", tier="premium"))
    assert "USE_CASE_TIER_SET_ASIDE" not in _codes(same)


def test_every_strategy_keeps_a_use_case_to_its_tier() -> None:
    # Also a use case that sets a strategy beside its tier, or a caller forcing one: a
    # cascade from the cheap tier, or voters from several tiers, would leave it.
    use_cases = {"legal": UseCase("legal", tier="premium", strategy=Strategy.CASCADE)}
    policy = replace(POLICY, use_cases=use_cases)

    def planned(strategy: Strategy) -> ExecutionPlan:
        request = _request("review this contract", use_case="legal", strategy=strategy)
        return plan(request, _cls(Difficulty.MEDIUM), CATALOG, policy, StateSnapshot())

    decided = planned(Strategy.AUTO)  # the use case's cascade cannot run in one tier
    assert [c.model for c in decided.candidates] == ["frontier"]
    assert "STRATEGY_SKIPPED" in _codes(decided)
    for forced in (Strategy.CASCADE, Strategy.CONSENSUS_MAJORITY):  # the caller's: refused
        with pytest.raises(StrategyInfeasible):
            planned(forced)


def test_ambiguous_classification_moves_up() -> None:
    decided = plan(_request(), _cls(Difficulty.LOW, 0.3), CATALOG, POLICY, StateSnapshot())
    assert decided.candidates[0].model == "mid"
    assert any(r.code == "AMBIGUOUS_UP" for r in decided.reasons)


def test_required_capability_filters() -> None:
    models = _models(_request(required_capabilities=frozenset({Capability.VISION})))
    assert set(models) <= {"mid", "frontier"}


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


def test_a_model_that_cannot_write_max_tokens_is_filtered() -> None:
    data = sim_config()
    for name, model in data["models"].items():
        model["max_output_tokens"] = 32_000 if name == "frontier" else 4096
    catalog = build_catalog(parse_config(data))
    long_answer = RouteRequest(
        "r1", (Message(Role.USER, "hello"),), params=GenerationParams(max_tokens=20_000)
    )
    # Unset, nothing is known and nothing is filtered.
    assert len(plan(long_answer, _cls(), CATALOG, POLICY, StateSnapshot()).candidates) > 1
    decided = plan(long_answer, _cls(), catalog, POLICY, StateSnapshot())
    assert [c.model for c in decided.candidates] == ["frontier"]
    assert any(r.code == "FILTERED" and "writes at most 4096" in r.message for r in decided.reasons)
    with pytest.raises(NoCandidate) as info:  # a forced model that cannot is refused
        plan(
            replace(long_answer, hints=Hints(model="mid")), _cls(), catalog, POLICY, StateSnapshot()
        )
    assert info.value.message.startswith("hints.model: mid cannot take this request")


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


@pytest.mark.parametrize(
    ("hints", "message"),
    [
        # JSON schema + vision: only frontier qualifies, and one model cannot vote.
        (
            {
                "strategy": Strategy.CONSENSUS_MAJORITY,
                "required_capabilities": frozenset({Capability.JSON_SCHEMA, Capability.VISION}),
            },
            "needs at least 2 eligible models, found frontier",
        ),
        (
            {"strategy": Strategy.CONSENSUS_JUDGE, "model": "frontier"},
            "a forced model cannot be outvoted",
        ),
        # Each model fits the ceiling alone, three voters together do not.
        (
            {"strategy": Strategy.CONSENSUS_MAJORITY, "max_cost_usd": 0.0003},
            "exceeds the ceiling $0.000300",
        ),
        (
            {"strategy": Strategy.CASCADE, "tier": "premium"},
            "needs eligible models in at least two tiers, found premium",
        ),
        (
            {"strategy": Strategy.CASCADE, "max_cost_usd": 0.0005},
            "needs eligible models in at least two tiers, found cheap",
        ),
        # flash and mid each fit the ceiling; flash then mid does not.
        (
            {"strategy": Strategy.CASCADE, "max_cost_usd": 0.0013},
            "the cost ceiling $0.001300 leaves no tier to escalate to",
        ),
    ],
)
def test_forced_infeasible_strategy_is_refused_clearly(hints: dict[str, Any], message: str) -> None:
    with pytest.raises(StrategyInfeasible) as info:
        _plan(_request(**hints), _cls(Difficulty.MEDIUM))
    assert message in info.value.message
    assert info.value.code.name == "FAILED_PRECONDITION"
    assert info.value.metadata["strategy"] == hints["strategy"].value


def test_plan_is_pure() -> None:
    request, cls = _request(), _cls(Difficulty.MEDIUM)
    assert plan(request, cls, CATALOG, POLICY, StateSnapshot()) == plan(
        request, cls, CATALOG, POLICY, StateSnapshot()
    )


# ---- strategy choice ---------------------------------------------------------------

PRESSURE = StateSnapshot(budget_used_share=0.95)


@pytest.mark.parametrize(
    ("hints", "difficulty", "snapshot", "strategy", "code"),
    [
        ({}, Difficulty.LOW, StateSnapshot(), Strategy.SINGLE, "AUTO_SINGLE"),
        ({}, Difficulty.MEDIUM, StateSnapshot(), Strategy.CASCADE, "AUTO_CASCADE"),
        ({}, Difficulty.HIGH, StateSnapshot(), Strategy.SINGLE, "AUTO_SINGLE"),
        (
            {"priority": Priority.QUALITY},
            Difficulty.HIGH,
            StateSnapshot(),
            Strategy.CONSENSUS_MAJORITY,
            "AUTO_CONSENSUS",
        ),
        (
            {"critical": True},
            Difficulty.LOW,
            StateSnapshot(),
            Strategy.CONSENSUS_MAJORITY,
            "AUTO_CONSENSUS",
        ),
        (
            {"critical": True},
            Difficulty.LOW,
            PRESSURE,
            Strategy.CONSENSUS_MAJORITY,
            "AUTO_CONSENSUS",
        ),
        (
            {"priority": Priority.QUALITY},
            Difficulty.HIGH,
            PRESSURE,
            Strategy.SINGLE,
            "BUDGET_PRESSURE",
        ),
        ({}, Difficulty.HIGH, PRESSURE, Strategy.CASCADE, "AUTO_CASCADE"),
        (
            {"priority": Priority.LATENCY, "critical": True},
            Difficulty.HIGH,
            StateSnapshot(),
            Strategy.SINGLE,
            "AUTO_SINGLE",
        ),
        (
            {"priority": Priority.COST},
            Difficulty.HIGH,
            StateSnapshot(),
            Strategy.CASCADE,
            "AUTO_CASCADE",
        ),
        (
            {"priority": Priority.QUALITY},
            Difficulty.MEDIUM,
            StateSnapshot(),
            Strategy.SINGLE,
            "AUTO_SINGLE",
        ),
        (
            {"use_case": "autocomplete"},
            Difficulty.MEDIUM,
            StateSnapshot(),
            Strategy.SINGLE,
            "AUTO_SINGLE",
        ),
        ({"tier": "mid"}, Difficulty.MEDIUM, StateSnapshot(), Strategy.SINGLE, "AUTO_SINGLE"),
        # Consensus would not fit the ceiling: the planner says so and runs single.
        (
            {"priority": Priority.QUALITY, "max_cost_usd": 0.003},
            Difficulty.HIGH,
            StateSnapshot(),
            Strategy.SINGLE,
            "CONSENSUS_SKIPPED",
        ),
    ],
)
def test_auto_chooses(
    hints: dict[str, Any],
    difficulty: Difficulty,
    snapshot: StateSnapshot,
    strategy: Strategy,
    code: str,
) -> None:
    decided = _plan(_request(**hints), _cls(difficulty), snapshot)
    assert decided.strategy is strategy
    assert code in _codes(decided)


def test_auto_consensus_can_be_switched_off_or_judged() -> None:
    request, cls = _request(critical=True), _cls(Difficulty.HIGH)
    off = replace(POLICY, consensus=replace(POLICY.consensus, auto=False))
    assert "CONSENSUS_OFF" in _codes(_plan(request, cls, policy=off))
    judged = replace(
        POLICY, consensus=replace(POLICY.consensus, auto_mode=Strategy.CONSENSUS_JUDGE)
    )
    assert _plan(request, cls, policy=judged).strategy is Strategy.CONSENSUS_JUDGE


def test_policy_strategy_that_cannot_run_degrades_to_single() -> None:
    use_cases = {"review": UseCase("review", strategy=Strategy.CONSENSUS_MAJORITY)}
    policy = replace(POLICY, use_cases=use_cases)
    decided = _plan(_request(use_case="review", model="mid"), policy=policy)
    assert decided.strategy is Strategy.SINGLE
    assert "STRATEGY_SKIPPED" in _codes(decided)
    assert _plan(_request(use_case="review"), policy=policy).strategy is Strategy.CONSENSUS_MAJORITY


# ---- cascade layout and the escalation guard ---------------------------------------


def _stages(decided: ExecutionPlan) -> list[tuple[str, list[str]]]:
    return [(s.role, [c.model for c in s.candidates]) for s in decided.stages]


def test_cascade_tiers_cheapest_first_with_same_tier_failover() -> None:
    decided = _plan(_request(strategy=Strategy.CASCADE), _cls(Difficulty.MEDIUM))
    assert _stages(decided) == [
        ("tier", ["flash", "flash-b"]),
        ("tier", ["mid"]),
        ("tier", ["frontier"]),
    ]
    costs = [c.estimated_cost_usd for c in decided.candidates]
    assert decided.estimated_cost_min_usd == costs[0]
    assert decided.estimated_cost_max_usd == pytest.approx(sum(costs))
    assert "escalate to mid" in decided.stages[0].note


def test_cascade_respects_the_upstream_call_cap() -> None:
    policy = replace(POLICY, max_upstream_calls=2)
    decided = _plan(_request(strategy=Strategy.CASCADE), _cls(Difficulty.MEDIUM), policy=policy)
    assert _stages(decided) == [("tier", ["flash"]), ("tier", ["mid"])]
    assert decided.max_upstream_calls == 2


def _probe_ids(probe: bool, share: float = POLICY.cascade.probe_share) -> str:
    return next(f"r{i}" for i in range(1000) if is_probe(f"r{i}", share) is probe)


@pytest.mark.parametrize(
    ("rates", "probe", "first_stage", "code"),
    [
        ({}, False, ["flash", "flash-b"], "AUTO_CASCADE"),
        ({"/cheap": 0.3}, False, ["flash", "flash-b"], "AUTO_CASCADE"),
        ({"/cheap": 0.4}, False, ["flash", "flash-b"], "AUTO_CASCADE"),  # not above
        ({"/cheap": 0.6}, False, ["mid"], "ESCALATION_GUARD"),
        ({"/cheap": 0.6}, True, ["flash", "flash-b"], "GUARD_PROBE"),
        ({"email/cheap": 0.9}, False, ["flash", "flash-b"], "AUTO_CASCADE"),  # another route
    ],
)
def test_escalation_guard(
    rates: dict[str, float], probe: bool, first_stage: list[str], code: str
) -> None:
    request = replace(_request(), request_id=_probe_ids(probe))
    decided = _plan(request, _cls(Difficulty.MEDIUM), StateSnapshot(escalation_rates=rates))
    assert decided.strategy is Strategy.CASCADE
    assert _stages(decided)[0][1] == first_stage
    assert code in _codes(decided)


def test_guard_keys_by_agent() -> None:
    snapshot = StateSnapshot(escalation_rates={"email/cheap": 0.9})
    request = replace(_request(agent="email"), request_id=_probe_ids(False))
    assert _stages(_plan(request, _cls(Difficulty.MEDIUM), snapshot))[0][1] == ["mid"]


def test_guard_leaving_one_tier_means_single_in_auto_and_a_short_cascade_when_forced() -> None:
    snapshot = StateSnapshot(escalation_rates={"/cheap": 0.8, "/mid": 0.7})
    request = replace(_request(), request_id=_probe_ids(False))
    auto = _plan(request, _cls(Difficulty.MEDIUM), snapshot)
    assert auto.strategy is Strategy.SINGLE
    assert "CASCADE_SKIPPED" in _codes(auto)
    forced = _plan(replace(request, hints=Hints(strategy=Strategy.CASCADE)), snapshot=snapshot)
    assert _stages(forced) == [("tier", ["frontier"])]


def test_probe_choice_is_a_deterministic_share() -> None:
    ids = [f"req-{i}" for i in range(4000)]
    share = sum(is_probe(i, 0.05) for i in ids) / len(ids)
    assert 0.04 < share < 0.06
    assert [is_probe(i, 0.05) for i in ids[:50]] == [is_probe(i, 0.05) for i in ids[:50]]
    assert not any(is_probe(i, 0.0) for i in ids[:100])


# ---- consensus layout --------------------------------------------------------------


def test_majority_voters_most_capable_first_and_cost_range() -> None:
    decided = _plan(_request(strategy=Strategy.CONSENSUS_MAJORITY), _cls(Difficulty.MEDIUM))
    assert _stages(decided) == [("voters", ["frontier", "mid", "flash"])]
    costs = {c.model: c.estimated_cost_usd for c in decided.candidates}
    # Early exit: the two cheapest agreeing decide it; the max is every call.
    assert decided.estimated_cost_min_usd == pytest.approx(costs["flash"] + costs["mid"])
    assert decided.estimated_cost_max_usd == pytest.approx(sum(costs.values()))


def test_judge_stage_and_its_cost() -> None:
    decided = _plan(_request(strategy=Strategy.CONSENSUS_JUDGE), _cls(Difficulty.MEDIUM))
    assert _stages(decided) == [("voters", ["frontier", "mid", "flash"]), ("judge", ["frontier"])]
    voters = sum(c.estimated_cost_usd for c in decided.stages[0].candidates)
    judge = decided.stages[1].candidates[0].estimated_cost_usd
    assert decided.estimated_cost_min_usd == pytest.approx(voters)
    assert decided.estimated_cost_max_usd == pytest.approx(voters + judge)


@pytest.mark.parametrize(
    ("size", "cap", "strategy", "voters"),
    [
        (0, 8, Strategy.CONSENSUS_MAJORITY, 3),  # the configured default
        (2, 8, Strategy.CONSENSUS_MAJORITY, 2),
        (5, 8, Strategy.CONSENSUS_MAJORITY, 4),  # only four models
        (5, 3, Strategy.CONSENSUS_MAJORITY, 3),  # the upstream call cap
        (5, 3, Strategy.CONSENSUS_JUDGE, 2),  # one call kept for the judge
    ],
)
def test_consensus_size_is_capped(size: int, cap: int, strategy: Strategy, voters: int) -> None:
    policy = replace(POLICY, max_upstream_calls=cap)
    request = _request(strategy=strategy, consensus_size=size)
    decided = _plan(request, _cls(Difficulty.MEDIUM), policy=policy)
    assert len(decided.stages[0].candidates) == voters


def test_cap_too_small_for_any_vote() -> None:
    policy = replace(POLICY, max_upstream_calls=2)
    with pytest.raises(StrategyInfeasible, match="allows no vote"):
        _plan(_request(strategy=Strategy.CONSENSUS_JUDGE), policy=policy)


def test_judge_family_excluded_from_voters() -> None:
    policy = replace(POLICY, consensus=replace(POLICY.consensus, exclude_judge_provider=True))
    decided = _plan(_request(strategy=Strategy.CONSENSUS_JUDGE), policy=policy)
    assert _stages(decided) == [("voters", ["mid", "flash"]), ("judge", ["frontier"])]
    assert "JUDGE_FAMILY_EXCLUDED" in _codes(decided)


def test_configured_judge_is_used() -> None:
    policy = replace(POLICY, consensus=replace(POLICY.consensus, judge_model="flash"))
    decided = _plan(_request(strategy=Strategy.CONSENSUS_JUDGE), policy=policy)
    assert decided.stages[1].candidates[0].model == "flash"


def test_judge_must_be_cleared_for_the_data() -> None:
    data = with_model(sim_config(), "frontier", max_sensitivity="public")
    config = parse_config(data)
    catalog, policy = build_catalog(config), build_policy(config)
    policy = replace(policy, consensus=replace(policy.consensus, judge_model="frontier"))
    request = _request(strategy=Strategy.CONSENSUS_JUDGE, sensitivity=Sensitivity.INTERNAL)
    with pytest.raises(StrategyInfeasible, match="frontier is not cleared for internal data"):
        plan(request, _cls(), catalog, policy, StateSnapshot())


def test_observed_accuracy_weights_votes() -> None:
    policy = replace(POLICY, consensus=replace(POLICY.consensus, weighting="observed"))
    snapshot = StateSnapshot(model_accuracy={"mid/chat": 0.9, "flash/code": 0.2})
    decided = _plan(
        _request(strategy=Strategy.CONSENSUS_MAJORITY), snapshot=snapshot, policy=policy
    )
    weights = {c.model: c.weight for c in decided.candidates}
    assert weights == {"frontier": 1.0, "mid": 0.9, "flash": 1.0}
    assert "OBSERVED_WEIGHTS" in _codes(decided)


def test_unhealthy_voters_go_last() -> None:
    snapshot = StateSnapshot(providers={"sim-b": ProviderHealth(BreakerState.OPEN, 5, 0.0)})
    decided = _plan(_request(strategy=Strategy.CONSENSUS_MAJORITY), snapshot=snapshot)
    assert [c.model for c in decided.candidates] == ["mid", "flash", "frontier"]


@pytest.mark.parametrize(
    "hints",
    [
        {"strategy": Strategy.CASCADE},
        {"strategy": Strategy.CONSENSUS_JUDGE},
        {"critical": True},
    ],
)
def test_multi_call_plans_are_pure(hints: dict[str, Any]) -> None:
    request, cls = _request(**hints), _cls(Difficulty.MEDIUM)
    snapshot = StateSnapshot(escalation_rates={"/cheap": 0.2})
    assert _plan(request, cls, snapshot) == _plan(request, cls, snapshot)


def test_judge_outside_the_callers_catalog_is_infeasible() -> None:
    policy = replace(POLICY, consensus=replace(POLICY.consensus, judge_model="frontier"))
    narrowed = replace(CATALOG, models={n: m for n, m in CATALOG.models.items() if n != "frontier"})
    request = _request(strategy=Strategy.CONSENSUS_JUDGE)
    with pytest.raises(StrategyInfeasible, match="frontier is not available to this caller"):
        plan(request, _cls(), narrowed, policy, StateSnapshot())


def test_max_tokens_is_the_output_estimate_so_a_reservation_covers_it() -> None:
    # A budget reservation must cover what the caller allowed the model to write.
    classification = Classification("chat", Difficulty.LOW, 0.9, "rules")
    request = RouteRequest(
        "r", (Message(Role.USER, "hello"),), params=GenerationParams(max_tokens=1000)
    )
    assert estimate_tokens(request, classification).output_tokens == 1000
    unset = RouteRequest("r", (Message(Role.USER, "hello"),))
    assert estimate_tokens(unset, classification).output_tokens < 1000


@pytest.mark.parametrize(("cap", "voters", "judged"), [(4, 3, True), (3, 2, True), (2, 2, False)])
def test_a_tie_break_judge_keeps_a_call_of_the_cap(cap: int, voters: int, judged: bool) -> None:
    # The plan shows the judge only where the cap leaves it a call (and two voters).
    consensus = replace(POLICY.consensus, size=3, tie_break="judge", judge_model="frontier")
    policy = replace(POLICY, consensus=consensus, max_upstream_calls=cap)
    decided = _plan(_request(strategy=Strategy.CONSENSUS_MAJORITY), policy=policy)
    roles = [s.role for s in decided.stages]
    assert len(decided.stages[0].candidates) == voters
    assert ("judge" in roles) is judged
    assert len(decided.stages[0].candidates) + judged <= cap
