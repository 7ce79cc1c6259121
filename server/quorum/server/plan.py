"""The planner: pure, no I/O, no clock.

``plan(request, classification, catalog, policy, snapshot)`` chooses the strategy and the
ordered candidates, estimates the cost and records why. Everything it needs is passed
in, so its tests are tables.

Order of decisions for the single strategy:

1. Eligible models: every needed capability (asked for, or implied by tools, images,
   JSON formats, logprobs), a context window that fits, cleared for the request's data
   sensitivity, and an estimated cost within the caller's ceiling.
2. Target tier: a forced model or tier, else the use-case policy, else the priority
   (latency and cost → cheapest tier, quality → most capable), else difficulty. An
   ambiguous classification moves one tier up.
3. Order: the target tier cheapest first, then more capable tiers, then cheaper ones;
   providers whose breaker is open or cooling down go last. The list is cut to the
   failover limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from quorum.server.catalog import Catalog, ModelSpec
from quorum.server.domain import (
    BreakerState,
    Candidate,
    Classification,
    Difficulty,
    ExecutionPlan,
    PlanStage,
    Priority,
    Reason,
    RouteRequest,
    Sensitivity,
    Strategy,
)
from quorum.server.errors import NoCandidate, StrategyInfeasible
from quorum.server.policy import RoutingPolicy
from quorum.server.state import StateSnapshot
from quorum.server.tokens import count_tokens

_DEFAULT_OUTPUT_TOKENS = {Difficulty.LOW: 150, Difficulty.MEDIUM: 400, Difficulty.HIGH: 800}
_UNHEALTHY = (BreakerState.OPEN, BreakerState.COOLING_DOWN)


@dataclass(frozen=True, slots=True)
class TokenEstimate:
    input_tokens: int
    output_tokens: int


def estimate_tokens(request: RouteRequest, classification: Classification) -> TokenEstimate:
    """Input tokens from the text; output from max_tokens or a default by difficulty."""
    input_tokens = sum(count_tokens(m.text) + 4 for m in request.messages)
    input_tokens += sum(
        count_tokens(t.description + t.parameters_json) + 8 for t in request.params.tools
    )
    input_tokens += sum(765 for m in request.messages for p in m.parts if p.image is not None)
    expected = _DEFAULT_OUTPUT_TOKENS[classification.difficulty]
    output = min(request.params.max_tokens, expected) if request.params.max_tokens else expected
    return TokenEstimate(input_tokens, output)


def _eligible(
    request: RouteRequest,
    catalog: Catalog,
    tokens: TokenEstimate,
    reasons: list[Reason],
) -> list[ModelSpec]:
    needed = request.needed_capabilities()
    sensitivity = request.hints.sensitivity or Sensitivity.PUBLIC
    ceiling = request.hints.max_cost_usd
    window_needed = tokens.input_tokens + (request.params.max_tokens or 0)
    eligible: list[ModelSpec] = []
    dropped: dict[str, list[str]] = {}
    for model in catalog.ordered():
        why: list[str] = []
        missing = needed - model.capabilities
        if missing:
            why.append("lacks " + ",".join(sorted(c.value for c in missing)))
        if window_needed > model.context_window:
            why.append(f"context {model.context_window} < {window_needed}")
        if model.max_sensitivity < sensitivity:
            why.append(f"not cleared for {sensitivity.name.lower()} data")
        if ceiling is not None:
            cost = model.estimate_cost(tokens.input_tokens, tokens.output_tokens)
            if cost > ceiling:
                why.append(f"est. ${cost:.6f} > ceiling ${ceiling:.6f}")
        if why:
            dropped[model.name] = why
        else:
            eligible.append(model)
    if dropped:
        detail = "; ".join(f"{m}: {', '.join(w)}" for m, w in dropped.items())
        reasons.append(Reason("FILTERED", f"excluded {detail}"))
    if not eligible:
        raise NoCandidate(
            "no configured model satisfies the request: "
            + "; ".join(f"{m}: {', '.join(w)}" for m, w in dropped.items()),
            metadata={"needed": ",".join(sorted(c.value for c in needed))},
        )
    return eligible


def _target_tier(
    request: RouteRequest,
    classification: Classification,
    catalog: Catalog,
    policy: RoutingPolicy,
    reasons: list[Reason],
) -> str:
    hints = request.hints
    if hints.model:
        tier = catalog.models[hints.model].tier
        reasons.append(Reason("FORCED_MODEL", f"caller asked for model {hints.model}"))
        return tier
    if hints.tier:
        reasons.append(Reason("FORCED_TIER", f"caller asked for tier {hints.tier}"))
        return hints.tier
    use_case = policy.use_cases.get(hints.use_case) if hints.use_case else None
    if use_case is not None and use_case.tier:
        reasons.append(Reason("USE_CASE_TIER", f"use case {use_case.name} → tier {use_case.tier}"))
        return use_case.tier
    priority = effective_priority(request, policy)
    if priority in (Priority.LATENCY, Priority.COST):
        reasons.append(Reason("PRIORITY_TIER", f"{priority.value} priority → cheapest tier"))
        return catalog.tiers[0]
    if priority is Priority.QUALITY:
        reasons.append(Reason("PRIORITY_TIER", "quality priority → most capable tier"))
        return catalog.tiers[-1]
    tier = catalog.difficulty_tiers[classification.difficulty]
    reasons.append(
        Reason(
            "DIFFICULTY_TIER",
            f"{classification.task}, {classification.difficulty.name.lower()} difficulty "
            f"(confidence {classification.confidence:.2f}) → tier {tier}",
        )
    )
    if classification.confidence < policy.ambiguous_below:
        rank = catalog.tier_rank(tier)
        if rank + 1 < len(catalog.tiers):
            tier = catalog.tiers[rank + 1]
            reasons.append(
                Reason(
                    "AMBIGUOUS_UP",
                    f"confidence below {policy.ambiguous_below:.2f} → more capable tier {tier}",
                )
            )
    return tier


def effective_priority(request: RouteRequest, policy: RoutingPolicy) -> Priority:
    """The caller's priority, unless left balanced and a use case sets one."""
    use_case = policy.use_cases.get(request.hints.use_case) if request.hints.use_case else None
    if request.hints.priority is Priority.BALANCED and use_case and use_case.priority:
        return use_case.priority
    return request.hints.priority


def _order(
    eligible: list[ModelSpec], target_tier: str, catalog: Catalog, forced: str
) -> list[ModelSpec]:
    rank = catalog.tier_rank(target_tier)

    def key(model: ModelSpec) -> tuple[int, int, float, str]:
        if model.name == forced:
            group = -1
        elif model.tier_rank >= rank:
            group = model.tier_rank - rank
        else:
            group = len(catalog.tiers) + (rank - model.tier_rank)
        return (0 if model.name == forced else 1, group, model.blended_price, model.name)

    return sorted(eligible, key=key)


def _candidate(
    model: ModelSpec, tokens: TokenEstimate, snapshot: StateSnapshot, note: str
) -> Candidate:
    health = snapshot.health(model.provider)
    if health.state in _UNHEALTHY:
        note = (
            f"{note}; provider {health.state.value}" if note else f"provider {health.state.value}"
        )
    return Candidate(
        model=model.name,
        provider=model.provider,
        tier=model.tier,
        estimated_cost_usd=model.estimate_cost(tokens.input_tokens, tokens.output_tokens),
        breaker_state=health.state,
        weight=model.weight,
        note=note,
    )


def choose_strategy(
    request: RouteRequest, policy: RoutingPolicy, reasons: list[Reason]
) -> Strategy:
    """The strategy to run. Only single is executable so far; others are refused clearly."""
    use_case = policy.use_cases.get(request.hints.use_case) if request.hints.use_case else None
    strategy = request.hints.strategy
    if strategy is Strategy.AUTO and use_case is not None and use_case.strategy:
        strategy = use_case.strategy
        reasons.append(Reason("USE_CASE_STRATEGY", f"use case {use_case.name} → {strategy.value}"))
    if strategy is Strategy.AUTO:
        strategy = policy.default_strategy
    if strategy is Strategy.AUTO:
        reasons.append(Reason("AUTO_SINGLE", "single model with failover"))
        return Strategy.SINGLE
    if strategy is not Strategy.SINGLE:
        raise StrategyInfeasible(
            f"strategy {strategy.value} is not enabled on this server",
            metadata={"strategy": strategy.value},
        )
    return strategy


def plan(
    request: RouteRequest,
    classification: Classification,
    catalog: Catalog,
    policy: RoutingPolicy,
    snapshot: StateSnapshot,
) -> ExecutionPlan:
    """Choose strategy, candidates and cost estimate for ``request``. Pure."""
    reasons: list[Reason] = []
    strategy = choose_strategy(request, policy, reasons)
    tokens = estimate_tokens(request, classification)
    eligible = _eligible(request, catalog, tokens, reasons)
    tier = _target_tier(request, classification, catalog, policy, reasons)
    ordered = _order(eligible, tier, catalog, request.hints.model)
    healthy = [m for m in ordered if snapshot.health(m.provider).state not in _UNHEALTHY]
    unhealthy = [m for m in ordered if m not in healthy]
    if unhealthy:
        reasons.append(
            Reason(
                "UNHEALTHY_LAST",
                "moved to the end: "
                + ", ".join(
                    f"{m.name} ({snapshot.health(m.provider).state.value})" for m in unhealthy
                ),
            )
        )
    ordered = healthy + unhealthy
    limit = min(policy.max_failover_attempts, policy.max_upstream_calls)
    chosen = ordered[:limit]
    primary = _candidate(chosen[0], tokens, snapshot, "first choice")
    fallbacks = tuple(_candidate(m, tokens, snapshot, "") for m in chosen[1:])
    stages = [PlanStage("primary", (primary,), "answer returned unless the call fails")]
    if fallbacks:
        stages.append(PlanStage("fallback", fallbacks, "tried in order on 5xx, 429, timeout"))
    costs = [c.estimated_cost_usd for s in stages for c in s.candidates]
    return ExecutionPlan(
        strategy=strategy,
        stages=tuple(stages),
        estimated_cost_min_usd=primary.estimated_cost_usd,
        estimated_cost_max_usd=max(costs),
        reasons=tuple(reasons),
        max_upstream_calls=limit,
    )
