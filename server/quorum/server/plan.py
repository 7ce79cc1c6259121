"""The planner: pure, no I/O, no clock.

``plan(request, classification, catalog, policy, snapshot)`` chooses the strategy and the
ordered candidates, estimates the cost and records why. Everything it needs is passed
in, so its tests are tables.

1. Eligible models: every needed capability (asked for, or implied by tools, images,
   JSON formats, logprobs), a context window that fits, room to write ``max_tokens``,
   cleared for the request's data sensitivity, and an estimated cost within the caller's
   ceiling.
2. Strategy: the caller's (``hints.strategy``), else the use case's, else the configured
   default; a forced strategy that cannot run raises
   :class:`~quorum.server.errors.StrategyInfeasible` saying why. Otherwise ``auto``:

   * a forced model or tier, a use case pinning a tier, or latency priority → single;
   * ``critical``, or high difficulty with quality priority → consensus, when at least
     two models are eligible, the estimate fits ``max_cost_usd`` and the budget is not
     under pressure (critical requests are exempt from the pressure rule);
   * medium difficulty (balanced priority), cost priority, or high difficulty under
     budget pressure → cascade, while the escalation guard leaves two tiers to try;
   * anything else → single.

   Multi-call strategies are laid out by :mod:`quorum.server.plan_stages`.
3. Single: target tier from a forced model or tier, the use case, the priority or the
   difficulty (an ambiguous classification moves one tier up); candidates in the target
   tier cheapest first (or as performance-based routing orders them, by the observed
   quality, latency and cost the priority weighs: :mod:`quorum.server.performance`),
   then more capable tiers, then cheaper ones; unhealthy models
   last (a model is unhealthy when every breaker it runs under — its provider's, or its
   deployments' own — is open or cooling down); cut to the failover limit. A use case
   that sets a tier keeps every strategy to that tier's models.
"""

from __future__ import annotations

from dataclasses import replace

from quorum.server.catalog import Catalog, ModelSpec
from quorum.server.domain import (
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
from quorum.server.performance import describe as describe_performance
from quorum.server.performance import figures as performance_figures
from quorum.server.performance import rank as performance_rank
from quorum.server.plan_stages import (
    Planning,
    cascade_route,
    eligible_cascade_tiers,
    guard_tiers,
    is_probe,
    make_candidate,
    plan_cascade,
    plan_consensus,
    refuse_forced_model,
)
from quorum.server.policy import RoutingPolicy
from quorum.server.state import StateSnapshot
from quorum.server.tokens import count_tokens, prompt_tokens
from quorum.server.values import value_type

__all__ = [
    "TokenEstimate",
    "cascade_route",
    "effective_priority",
    "estimate_tokens",
    "is_probe",
    "plan",
]

_DEFAULT_OUTPUT_TOKENS = {Difficulty.LOW: 150, Difficulty.MEDIUM: 400, Difficulty.HIGH: 800}


@value_type
class TokenEstimate:
    input_tokens: int
    output_tokens: int


def estimate_tokens(request: RouteRequest, classification: Classification) -> TokenEstimate:
    """Input tokens from the text; output from max_tokens, the most the caller will pay
    for (so a budget reservation covers it), or else a default by difficulty."""
    input_tokens = prompt_tokens(request.messages)
    if request.params.tools:
        input_tokens += sum(
            count_tokens(t.description + t.parameters_json) + 8 for t in request.params.tools
        )
    input_tokens += sum(
        765 for m in request.messages if m.parts for p in m.parts if p.image is not None
    )
    output = request.params.max_tokens or _DEFAULT_OUTPUT_TOKENS[classification.difficulty]
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
        limit = model.max_output_tokens
        if limit is not None and request.params.max_tokens > limit:
            why.append(f"writes at most {limit} < max_tokens")
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
    forced = request.hints.model
    if forced in dropped:
        # The caller named this model: another one, perhaps in a dearer tier, is not
        # what was asked for.
        raise NoCandidate(
            f"hints.model: {forced} cannot take this request: {', '.join(dropped[forced])}",
            metadata={"model": forced},
        )
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


def _target_tier(p: Planning) -> str:
    request, classification, catalog, policy = p.request, p.classification, p.catalog, p.policy
    reasons = p.reasons
    hints = request.hints
    if hints.model:
        spec = catalog.models.get(hints.model)
        if spec is None:  # outside what this caller (tenant, agent) may be answered by
            raise NoCandidate(
                f"hints.model: {hints.model} is not among the models this request may use",
                metadata={"model": hints.model},
            )
        tier = spec.tier
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


def _within_pinned_tier(
    request: RouteRequest, policy: RoutingPolicy, eligible: list[ModelSpec], reasons: list[Reason]
) -> list[ModelSpec]:
    """A use case that sets a tier (legal review → the top tier, autocomplete → the
    lowest) is answered from that tier only, whatever the strategy: no fallback, no
    cascade or voters from another."""
    hints = request.hints
    use_case = policy.use_cases.get(hints.use_case) if hints.use_case else None
    if use_case is None or not use_case.tier:
        return eligible
    if hints.model or hints.tier:
        # The caller's own pin decides; say so when it leaves the use case's tier.
        pinned = f"model {hints.model}" if hints.model else f"tier {hints.tier}"
        tier = next((m.tier for m in eligible if m.name == hints.model), hints.tier)
        if tier == use_case.tier:
            return eligible
        reasons.append(
            Reason(
                "USE_CASE_TIER_SET_ASIDE",
                f"use case {use_case.name} answers from tier {use_case.tier}; "
                f"the caller's {pinned} decides instead",
            )
        )
        return eligible
    kept = [m for m in eligible if m.tier == use_case.tier]
    if not kept:
        raise NoCandidate(
            f"hints.use_case: use case {use_case.name} is answered from tier "
            f"{use_case.tier} only, and no model of it can take this request",
            metadata={"use_case": use_case.name, "tier": use_case.tier},
        )
    if len(kept) < len(eligible):
        reasons.append(
            Reason(
                "USE_CASE_TIER_ONLY",
                f"use case {use_case.name}: no model outside tier {use_case.tier}",
            )
        )
    return kept


def effective_priority(request: RouteRequest, policy: RoutingPolicy) -> Priority:
    """The caller's priority, unless left balanced and a use case sets one."""
    use_case = policy.use_cases.get(request.hints.use_case) if request.hints.use_case else None
    if request.hints.priority is Priority.BALANCED and use_case and use_case.priority:
        return use_case.priority
    return request.hints.priority


def _order(
    eligible: tuple[ModelSpec, ...],
    target_tier: str,
    catalog: Catalog,
    forced: str,
    scores: dict[str, float] | None = None,
) -> list[ModelSpec]:
    """Target tier first, then more capable tiers, then cheaper ones; within a tier by
    ``scores`` (highest first) when given, else cheapest first."""
    rank = catalog.tier_rank(target_tier)
    scores = scores or {}

    def key(model: ModelSpec) -> tuple[int, int, float, float, str]:
        if model.name == forced:
            group = -1
        elif model.tier_rank >= rank:
            group = model.tier_rank - rank
        else:
            group = len(catalog.tiers) + (rank - model.tier_rank)
        return (
            0 if model.name == forced else 1,
            group,
            -scores.get(model.name, 0.0),
            model.blended_price,
            model.name,
        )

    return sorted(eligible, key=key)


def _performance(p: Planning, tier: str) -> dict[str, float] | None:
    """Scores (highest first) for the target tier's models: their observed quality,
    latency and cost as the request's priority weighs them, with the figures used in
    the reasons."""
    policy = p.policy.performance
    in_tier = [m for m in p.eligible if m.tier == tier]
    if not policy.enabled or len(in_tier) < 2:
        return None
    task = p.classification.task
    priority = effective_priority(p.request, p.policy)
    estimates, explored = performance_rank(
        in_tier,
        task,
        p.snapshot,
        policy,
        p.request.request_id,
        priority=priority,
        costs={m.name: p.cost(m) for m in in_tier},
    )
    figures = "; ".join(performance_figures(e) for e in estimates)
    how = describe_performance(priority, policy, explored)
    p.reasons.append(Reason("PERFORMANCE", f"tier {tier} on {task}, {how}: {figures}"))
    return {e.model: float(len(estimates) - i) for i, e in enumerate(estimates)}


def _plan_single(p: Planning) -> ExecutionPlan:
    tier = _target_tier(p)
    forced = p.request.hints.model
    ordered = _order(p.eligible, tier, p.catalog, forced, _performance(p, tier))
    if forced:
        # A forced model fails over only to its equivalents: the models of its tier.
        others = [m.name for m in ordered if m.name != forced and m.tier != tier]
        ordered = [m for m in ordered if m.name == forced or m.tier == tier]
        if others:
            p.reasons.append(
                Reason(
                    "FORCED_MODEL_TIER",
                    f"failover stays in tier {tier}: {', '.join(others)} left out",
                )
            )
    healthy: list[ModelSpec] = []
    unhealthy: list[ModelSpec] = []
    for m in ordered:
        (healthy if p.healthy(m) else unhealthy).append(m)
    if unhealthy:
        p.reasons.append(
            Reason(
                "UNHEALTHY_LAST",
                "moved to the end: "
                + ", ".join(f"{m.name} ({p.health(m).state.value})" for m in unhealthy),
            )
        )
    ordered = healthy + unhealthy
    # Candidates are capped by the failover limit; the call cap leaves room for retries
    # and hedges up to the per-request limit.
    limit = p.policy.max_upstream_calls
    chosen = ordered[: min(p.policy.max_failover_attempts, limit)]
    primary = make_candidate(p, chosen[0], "first choice")
    fallbacks = tuple(make_candidate(p, m, "") for m in chosen[1:])
    stages = [PlanStage("primary", (primary,), "answer returned unless the call fails")]
    if fallbacks:
        stages.append(PlanStage("fallback", fallbacks, "tried in order on 5xx, 429, timeout"))
    costs = [c.estimated_cost_usd for s in stages for c in s.candidates]
    return ExecutionPlan(
        strategy=Strategy.SINGLE,
        stages=tuple(stages),
        estimated_cost_min_usd=primary.estimated_cost_usd,
        estimated_cost_max_usd=max(costs),
        reasons=tuple(p.reasons),
        max_upstream_calls=limit,
    )


def _requested(p: Planning) -> tuple[Strategy, bool]:
    """The strategy asked for (AUTO if none), and whether the caller forced it."""
    hints, policy = p.request.hints, p.policy
    if hints.strategy is not Strategy.AUTO:
        p.reasons.append(Reason("FORCED_STRATEGY", f"caller asked for {hints.strategy.value}"))
        return hints.strategy, True
    use_case = policy.use_cases.get(hints.use_case) if hints.use_case else None
    if use_case is not None and use_case.strategy and use_case.strategy is not Strategy.AUTO:
        p.reasons.append(
            Reason("USE_CASE_STRATEGY", f"use case {use_case.name} → {use_case.strategy.value}")
        )
        return use_case.strategy, False
    if policy.default_strategy is not Strategy.AUTO:
        p.reasons.append(
            Reason("DEFAULT_STRATEGY", f"configured default {policy.default_strategy.value}")
        )
    return policy.default_strategy, False


def _cascade(p: Planning, *, forced: bool) -> ExecutionPlan | None:
    """The cascade plan; None (auto only) when the guard leaves a single tier."""
    refuse_forced_model(p, Strategy.CASCADE)  # first, so the refusal names hints.model
    tiers = eligible_cascade_tiers(p)
    if len(tiers) < 2:
        raise p.infeasible(
            Strategy.CASCADE,
            "needs eligible models in at least two tiers, found " + (", ".join(tiers) or "none"),
        )
    guarded = guard_tiers(p, tiers)
    if len(guarded) < 2 and not forced:
        return None
    return plan_cascade(p, guarded)


def _auto(p: Planning) -> ExecutionPlan:
    hints, policy, snapshot = p.request.hints, p.policy, p.snapshot
    difficulty = p.classification.difficulty
    priority = effective_priority(p.request, policy)
    use_case = policy.use_cases.get(hints.use_case) if hints.use_case else None
    if hints.model or hints.tier or (use_case is not None and use_case.tier):
        p.reasons.append(Reason("AUTO_SINGLE", "a pinned model or tier runs single"))
        return _plan_single(p)
    if priority is Priority.LATENCY:
        p.reasons.append(Reason("AUTO_SINGLE", "latency priority → one model, no fan-out"))
        return _plan_single(p)
    pressure = snapshot.budget_used_share > policy.consensus.budget_pressure_above
    if hints.critical or (difficulty is Difficulty.HIGH and priority is Priority.QUALITY):
        why = "critical request" if hints.critical else "hard request, quality priority"
        if not policy.consensus.auto:
            p.reasons.append(Reason("CONSENSUS_OFF", f"{why}, but auto consensus is disabled"))
        elif pressure and not hints.critical:
            p.reasons.append(
                Reason(
                    "BUDGET_PRESSURE",
                    f"{snapshot.budget_used_share:.0%} of the budget spent → no fan-out",
                )
            )
        else:
            try:
                decided = plan_consensus(p, policy.consensus.auto_mode)
            except StrategyInfeasible as exc:
                p.reasons.append(Reason("CONSENSUS_SKIPPED", exc.message))
            else:
                p.reasons.insert(0, Reason("AUTO_CONSENSUS", f"{why} → consensus"))
                return _with_reasons(decided, p)
    wants_cascade = (
        (difficulty is Difficulty.MEDIUM and priority is Priority.BALANCED)
        or priority is Priority.COST
        or (pressure and difficulty is Difficulty.HIGH and priority is Priority.BALANCED)
    )
    if wants_cascade and policy.cascade.auto:
        try:
            cascade = _cascade(p, forced=False)
        except StrategyInfeasible as exc:
            p.reasons.append(Reason("CASCADE_SKIPPED", exc.message))
        else:
            if cascade is not None:
                why = f"{priority.value} priority" if priority is Priority.COST else "difficulty"
                p.reasons.insert(0, Reason("AUTO_CASCADE", f"{why} → cascade, cheapest first"))
                return _with_reasons(cascade, p)
            p.reasons.append(
                Reason("CASCADE_SKIPPED", "the escalation guard leaves one tier → single")
            )
    p.reasons.append(Reason("AUTO_SINGLE", "single model with failover"))
    return _plan_single(p)


def _with_reasons(decided: ExecutionPlan, p: Planning) -> ExecutionPlan:
    """``decided`` with every reason gathered, including those added after it was built."""
    return replace(decided, reasons=tuple(p.reasons))


def plan(
    request: RouteRequest,
    classification: Classification,
    catalog: Catalog,
    policy: RoutingPolicy,
    snapshot: StateSnapshot,
) -> ExecutionPlan:
    """Choose strategy, candidates and cost estimate for ``request``. Pure."""
    reasons: list[Reason] = []
    tokens = estimate_tokens(request, classification)
    eligible = _within_pinned_tier(
        request, policy, _eligible(request, catalog, tokens, reasons), reasons
    )
    p = Planning(
        request=request,
        classification=classification,
        catalog=catalog,
        policy=policy,
        snapshot=snapshot,
        input_tokens=tokens.input_tokens,
        output_tokens=tokens.output_tokens,
        eligible=tuple(eligible),
        reasons=reasons,
    )
    requested, forced = _requested(p)
    if requested is Strategy.AUTO:
        return _auto(p)
    if requested is Strategy.SINGLE:
        return _plan_single(p)
    try:
        if requested is Strategy.CASCADE:
            decided = _cascade(p, forced=True)
            assert decided is not None
            return decided
        return plan_consensus(p, requested)
    except StrategyInfeasible as exc:
        if forced:
            raise
        # A policy's strategy that cannot run for this request degrades to single.
        p.reasons.append(Reason("STRATEGY_SKIPPED", exc.message))
        return _plan_single(p)
