"""Stage builders of the multi-call strategies: cascade and consensus. Pure, like the planner.

:func:`plan_cascade` lays out one ``tier`` stage per cascade tier, cheapest first, after
the escalation guard has skipped tiers whose route keeps escalating (a deterministic
share of requests still probes them so the guard can recover). :func:`plan_consensus`
picks the voters — and the judge — and estimates the cheapest and the fullest path.
Both raise :class:`~quorum.server.errors.StrategyInfeasible` saying why when the
strategy cannot run for this request; the planner either reports that to a caller who
forced the strategy or, in ``auto``, falls back to a simpler one.
"""

from __future__ import annotations

from quorum.server.catalog import Catalog, ModelSpec
from quorum.server.domain import (
    BreakerState,
    Candidate,
    Classification,
    ExecutionPlan,
    PlanStage,
    Reason,
    RouteRequest,
    Sensitivity,
    Strategy,
)
from quorum.server.errors import StrategyInfeasible
from quorum.server.execute.vote import min_deciding_weight
from quorum.server.hashing import fraction
from quorum.server.policy import RoutingPolicy
from quorum.server.resilience.breakers import ProviderHealth
from quorum.server.state import StateSnapshot, accuracy_key, model_breakers, route_key
from quorum.server.values import value_type

UNHEALTHY = (BreakerState.OPEN, BreakerState.COOLING_DOWN)
JUDGE_PROMPT_TOKENS = 250  # the judge's instructions and delimiters
JUDGE_TOKENS_PER_CANDIDATE = 30  # its score and share of the rationale


@value_type
class Planning:
    """Everything one planning decision reads; ``reasons`` collects why."""

    request: RouteRequest
    classification: Classification
    catalog: Catalog
    policy: RoutingPolicy
    snapshot: StateSnapshot
    input_tokens: int
    output_tokens: int
    eligible: tuple[ModelSpec, ...]
    reasons: list[Reason]

    def cost(self, model: ModelSpec) -> float:
        return model.estimate_cost(self.input_tokens, self.output_tokens)

    def health(self, model: ModelSpec) -> ProviderHealth:
        """``model``'s health: its deployments' breakers, not its provider's."""
        return self.snapshot.model_health(model)

    def healthy(self, model: ModelSpec) -> bool:
        """Whether some deployment of ``model`` is neither open nor cooling down."""
        return self.health(model).state not in UNHEALTHY

    def infeasible(self, strategy: Strategy, why: str) -> StrategyInfeasible:
        return StrategyInfeasible(
            f"strategy {strategy.value} cannot run for this request: {why}",
            metadata={"strategy": strategy.value},
        )


def make_candidate(
    p: Planning, model: ModelSpec, note: str, *, cost: float | None = None, weight: float = 0.0
) -> Candidate:
    health = p.health(model)
    if health.state in UNHEALTHY:
        state = f"{_breaker_name(model)} {health.state.value}"
        note = f"{note}; {state}" if note else state
    return Candidate(
        model=model.name,
        provider=model.provider,
        tier=model.tier,
        estimated_cost_usd=p.cost(model) if cost is None else cost,
        breaker_state=health.state,
        weight=weight or model.weight,
        note=note,
        simulated=model.simulated is not None,
    )


def _breaker_name(model: ModelSpec) -> str:
    """How a candidate's note names the breakers it was judged by."""
    keys = model_breakers(model)
    if keys == (model.provider,):
        return "provider"
    if len(keys) == 1:
        return f"breaker {keys[0]}"
    return "every deployment"


def is_probe(request_id: str, share: float) -> bool:
    """Whether this request probes a guarded cascade route: a fixed hash of its id."""
    if share <= 0:
        return False
    return fraction(f"probe:{request_id}") < share


def request_agent(request: RouteRequest, classification: Classification) -> str:
    """The agent half of a cascade route key ("" when no agent is involved)."""
    return request.hints.agent or classification.agent


def cascade_route(
    request: RouteRequest, classification: Classification, catalog: Catalog, policy: RoutingPolicy
) -> str:
    """The route key the escalation guard judges for this request: its cheapest tier."""
    tiers = policy.cascade.tiers or catalog.tiers
    return route_key(request_agent(request, classification), tiers[0])


# ---- cascade -----------------------------------------------------------------------


def eligible_cascade_tiers(p: Planning) -> list[str]:
    """The cascade's tiers (config order, cheapest first) that have an eligible model."""
    hints = p.request.hints
    tiers = list(p.policy.cascade.tiers or p.catalog.tiers)
    if hints.tier:
        start = p.catalog.tier_rank(hints.tier)
        tiers = [t for t in tiers if p.catalog.tier_rank(t) >= start]
        p.reasons.append(Reason("FORCED_TIER", f"cascade starts at tier {hints.tier}"))
    with_models = [t for t in tiers if any(m.tier == t for m in p.eligible)]
    if len(with_models) < len(tiers):
        empty = ", ".join(t for t in tiers if t not in with_models)
        p.reasons.append(Reason("CASCADE_TIERS", f"no eligible model in tier {empty}"))
    return with_models


def guard_tiers(p: Planning, tiers: list[str]) -> list[str]:
    """Skip leading tiers whose route escalates above the threshold (except for probes)."""
    cascade = p.policy.cascade
    agent = request_agent(p.request, p.classification)
    probe = is_probe(p.request.request_id, cascade.probe_share)
    while len(tiers) > 1:
        key = route_key(agent, tiers[0])
        rate = p.snapshot.escalation_rates.get(key)
        if rate is None or rate <= cascade.escalation_threshold:
            break
        if probe:
            p.reasons.append(
                Reason(
                    "GUARD_PROBE",
                    f"route {key} escalates {rate:.0%} (> {cascade.escalation_threshold:.0%}); "
                    "this request probes it so the guard can recover",
                )
            )
            break
        p.reasons.append(
            Reason(
                "ESCALATION_GUARD",
                f"route {key} escalates {rate:.0%} (> {cascade.escalation_threshold:.0%}) → "
                f"skipping tier {tiers[0]}",
            )
        )
        tiers = tiers[1:]
    return tiers


def refuse_forced_model(p: Planning, strategy: Strategy) -> None:
    """A forced model is never swapped for another (the API's promise), so a multi-call
    strategy cannot run with ``hints.model``: voters would outvote it, a cascade would
    escalate from it or to it. Raised before anything else of the strategy is looked at,
    so the refusal names the hint; a caller who forced the strategy gets it as
    FAILED_PRECONDITION, a policy's choice degrades to single (``plan``) and auto never
    gets here (a pinned model runs single)."""
    if not p.request.hints.model:
        return
    if strategy is Strategy.CASCADE:
        raise p.infeasible(
            strategy, "a forced model cannot be escalated from or to; drop hints.model"
        )
    raise p.infeasible(strategy, "a forced model cannot be outvoted; drop hints.model")


def _cascade_cost(p: Planning, tiers: list[str], chosen: dict[str, list[ModelSpec]]) -> float:
    """The plan's ``estimated_cost_max_usd`` for this layout: every candidate of every
    tier, failover included, summed in stage order (the very figure, to the last bit, that
    the plan reports and the budget reservation holds)."""
    return sum(p.cost(m) for tier in tiers for m in chosen[tier])


def plan_cascade(p: Planning, tiers: list[str]) -> ExecutionPlan:
    """A cascade over ``tiers`` (already guarded), cut to the caller's cost ceiling."""
    strategy = Strategy.CASCADE
    cascade = p.policy.cascade
    refuse_forced_model(p, strategy)
    if not tiers:
        raise p.infeasible(strategy, "no tier has an eligible model")
    cap = p.policy.max_upstream_calls
    tiers = list(tiers)[:cap]
    wanted = min(2, len(tiers))
    by_tier: dict[str, list[ModelSpec]] = {}
    for tier in tiers:
        models = [m for m in p.eligible if m.tier == tier]
        by_tier[tier] = sorted(models, key=lambda m: (not p.healthy(m), m.blended_price, m.name))
    chosen: dict[str, list[ModelSpec]] = {t: by_tier[t][:1] for t in tiers}
    # The ceiling bounds the plan's whole estimate (estimated_cost_max_usd: every
    # candidate, same-tier failover included), not just the first model of each tier.
    # Like single and consensus, the ceiling is never exceeded: a model dearer than it
    # alone is not eligible, and a plan that does not fit is cut, never reported over it.
    # Tiers come first, as they are what a cascade is for: the dearest tiers are dropped
    # until the first models fit (refused, as before, if fewer than two tiers are left),
    # then same-tier failover is added only as far as the ceiling leaves room. A tier
    # without failover loses little: a call that fails escalates to the next tier.
    ceiling = p.request.hints.max_cost_usd
    if ceiling is not None:
        while len(tiers) > 1 and _cascade_cost(p, tiers, chosen) > ceiling:
            dropped = tiers.pop()
            del chosen[dropped]
            p.reasons.append(
                Reason(
                    "CEILING_CUT",
                    f"tier {dropped} dropped: the full cascade would exceed ${ceiling:.6f}",
                )
            )
    if len(tiers) < wanted:
        raise p.infeasible(
            strategy, f"the cost ceiling ${ceiling or 0:.6f} leaves no tier to escalate to"
        )
    total = len(tiers)
    full: set[str] = set()  # tiers whose next failover does not fit: each stays a prefix
    left_out: list[str] = []
    for extra in range(1, cascade.models_per_tier):
        for tier in tiers:
            if total >= cap or tier in full or len(by_tier[tier]) <= extra:
                continue
            chosen[tier].append(by_tier[tier][extra])
            if ceiling is not None and _cascade_cost(p, tiers, chosen) > ceiling:
                left_out.append(chosen[tier].pop().name)
                full.add(tier)
                continue
            total += 1
    if left_out:
        p.reasons.append(
            Reason(
                "CEILING_CUT",
                f"same-tier failover {', '.join(left_out)} left out: "
                f"the full cascade would exceed ${ceiling or 0:.6f}",
            )
        )
    stages: list[PlanStage] = []
    for i, tier in enumerate(tiers):
        last = i == len(tiers) - 1
        note = (
            f"tier {tier}: answer returned (gate recorded)"
            if last
            else f"tier {tier}: quality gate, escalate to {tiers[i + 1]} on fail"
        )
        candidates = tuple(
            make_candidate(p, m, "first in tier" if j == 0 else "same-tier failover")
            for j, m in enumerate(chosen[tier])
        )
        stages.append(PlanStage("tier", candidates, note))
    p.reasons.append(Reason("CASCADE_TIERS", f"tiers {' → '.join(tiers)}, cheapest first, gated"))
    return ExecutionPlan(
        strategy=strategy,
        stages=tuple(stages),
        estimated_cost_min_usd=stages[0].candidates[0].estimated_cost_usd,
        estimated_cost_max_usd=_cascade_cost(p, tiers, chosen),
        reasons=tuple(p.reasons),
        max_upstream_calls=cap,
    )


# ---- consensus ---------------------------------------------------------------------


def _judge_tokens(p: Planning, voters: int) -> tuple[int, int]:
    consensus = p.policy.consensus
    input_tokens = p.input_tokens + voters * p.output_tokens + JUDGE_PROMPT_TOKENS
    output_tokens = JUDGE_TOKENS_PER_CANDIDATE * voters + 40
    if consensus.synthesize:
        output_tokens += p.output_tokens
    return input_tokens, output_tokens


def _judge_model(p: Planning, voters: int) -> tuple[ModelSpec | None, str]:
    """The judge: the configured one, else the most capable model fit to read the request."""
    sensitivity = p.request.hints.sensitivity or Sensitivity.PUBLIC
    input_tokens, _ = _judge_tokens(p, voters)

    def unfit(model: ModelSpec) -> str:
        if model.max_sensitivity < sensitivity:
            return f"{model.name} is not cleared for {sensitivity.name.lower()} data"
        if model.context_window < input_tokens:
            return f"{model.name} context {model.context_window} < {input_tokens}"
        return ""

    name = p.policy.consensus.judge_model
    if name:
        model = p.catalog.models.get(name)
        if model is None:
            return None, f"judge model {name} is not available to this caller"
        why = unfit(model)
        return (None, why) if why else (model, "")
    fit = [m for m in p.catalog.ordered() if not unfit(m)]
    if not fit:
        return None, "no model may read this request as judge"
    return max(fit, key=lambda m: (p.healthy(m), m.tier_rank, m.blended_price, m.name)), ""


def _voter_pool(p: Planning, judge: ModelSpec | None) -> list[ModelSpec]:
    consensus = p.policy.consensus
    pool = list(p.eligible)
    if p.request.hints.tier:
        pool = [m for m in pool if m.tier == p.request.hints.tier]
    if judge is not None and consensus.exclude_judge_provider:
        excluded = [m.name for m in pool if m.provider == judge.provider]
        pool = [m for m in pool if m.provider != judge.provider]
        if excluded:
            p.reasons.append(
                Reason(
                    "JUDGE_FAMILY_EXCLUDED",
                    f"voters exclude the judge's provider {judge.provider}: {', '.join(excluded)}",
                )
            )
    preferred = {name: i for i, name in enumerate(consensus.models)}

    def key(m: ModelSpec) -> tuple[bool, int, int, float, str]:
        return (
            not p.healthy(m),
            preferred.get(m.name, len(preferred)),
            -m.tier_rank,
            m.blended_price,
            m.name,
        )

    return sorted(pool, key=key)


def _weight(p: Planning, model: ModelSpec) -> tuple[float, bool]:
    if p.policy.consensus.weighting == "observed":
        observed = p.snapshot.model_accuracy.get(accuracy_key(model.name, p.classification.task))
        if observed is not None:
            return max(observed, 0.01), True
    return model.weight, False


def plan_consensus(p: Planning, strategy: Strategy) -> ExecutionPlan:
    """N voters in parallel (plus a judge for the judge strategy or a judged tie-break)."""
    consensus = p.policy.consensus
    hints = p.request.hints
    refuse_forced_model(p, strategy)
    judged = strategy is Strategy.CONSENSUS_JUDGE
    wants_judge = judged or consensus.tie_break == "judge"
    asked = hints.consensus_size or consensus.size
    size = min(asked, consensus.max_size)
    cap = p.policy.max_upstream_calls
    # A planned judge (the strategy's, or a tie-break's) keeps a call of the cap.
    judge, judge_why = _judge_model(p, min(size, cap - 1)) if wants_judge else (None, "")
    if judge is not None and not judged and min(size, cap - 1) < 2:
        # A tie-break judge would leave no vote: ties go by capability instead.
        judge = None
        p.reasons.append(
            Reason(
                "TIE_BREAK",
                f"no tie-break judge: routing.max_upstream_calls {cap} leaves it no call",
            )
        )
    size = min(size, cap - (1 if judge is not None else 0))
    if judged and judge is None:
        raise p.infeasible(strategy, f"no judge: {judge_why}")
    pool = _voter_pool(p, judge)
    if len(pool) < 2:
        names = ", ".join(m.name for m in pool) or "none"
        raise p.infeasible(strategy, f"needs at least 2 eligible models, found {names}")
    if size < 2:
        raise p.infeasible(
            strategy, f"routing.max_upstream_calls {p.policy.max_upstream_calls} allows no vote"
        )
    if size < asked:
        p.reasons.append(
            Reason(
                "CONSENSUS_SIZE",
                f"{asked} voters asked, {size} allowed (routing.consensus.max_size "
                f"{consensus.max_size}, routing.max_upstream_calls {p.policy.max_upstream_calls})",
            )
        )
    voters = pool[:size]
    if len(voters) < size:
        p.reasons.append(
            Reason("CONSENSUS_SIZE", f"{size} voters wanted, {len(voters)} eligible models")
        )
    observed_any = False
    candidates: list[Candidate] = []
    for model in voters:
        weight, observed = _weight(p, model)
        observed_any |= observed
        note = "observed accuracy weight" if observed else ""
        candidates.append(make_candidate(p, model, note, weight=weight))
    if observed_any:
        p.reasons.append(
            Reason(
                "OBSERVED_WEIGHTS",
                f"votes weighted by observed accuracy on {p.classification.task}",
            )
        )
    voter_cost = sum(c.estimated_cost_usd for c in candidates)
    judge_candidate: Candidate | None = None
    if judge is not None:
        tokens = _judge_tokens(p, len(voters))
        judge_candidate = make_candidate(
            p,
            judge,
            "scores anonymised answers" if judged else "breaks ties only",
            cost=judge.estimate_cost(*tokens),
        )
    elif wants_judge:
        p.reasons.append(Reason("NO_TIE_JUDGE", f"ties go to the most capable: {judge_why}"))
    full = voter_cost + (judge_candidate.estimated_cost_usd if judge_candidate else 0.0)
    ceiling = hints.max_cost_usd
    if ceiling is not None and full > ceiling:
        raise p.infeasible(
            strategy,
            f"estimated ${full:.6f} for {len(voters)} voters"
            + (" and a judge" if judge_candidate else "")
            + f" exceeds the ceiling ${ceiling:.6f}",
        )
    if judged:
        cheapest = voter_cost
        note = "called in parallel; every answer goes to the judge"
    elif consensus.early_exit:
        by_cost = sorted(candidates, key=lambda c: c.estimated_cost_usd)
        k = min_deciding_weight([c.weight for c in by_cost])
        cheapest = sum(c.estimated_cost_usd for c in by_cost[:k])
        note = "called in parallel; weighted majority, the rest cancelled once it is certain"
    else:
        cheapest = voter_cost
        note = "called in parallel; weighted majority of every answer"
    stages = [PlanStage("voters", tuple(candidates), note)]
    if judge_candidate is not None:
        judge_note = (
            "anonymised, shuffled; strict JSON scores; majority if it fails"
            if judged
            else "only when the vote ties"
        )
        stages.append(PlanStage("judge", (judge_candidate,), judge_note))
    p.reasons.append(
        Reason(
            "CONSENSUS_VOTERS",
            f"{len(voters)} voters ({', '.join(c.model for c in candidates)}), "
            f"normaliser {consensus.normalizer}"
            + (f", judge {judge_candidate.model}" if judge_candidate else ""),
        )
    )
    return ExecutionPlan(
        strategy=strategy,
        stages=tuple(stages),
        estimated_cost_min_usd=cheapest,
        estimated_cost_max_usd=full,
        reasons=tuple(p.reasons),
        max_upstream_calls=p.policy.max_upstream_calls,
    )
