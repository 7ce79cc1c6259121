"""The cascade strategy: cheapest tier first, escalating when the quality gate fails.

The plan holds one ``tier`` stage per tier, cheapest first (the escalation guard has
already skipped tiers whose route keeps escalating). For each tier:

1. **Deadline**: if the tier's observed p95 latency does not fit in the time left, the
   cascade skips to the first later tier that fits; when none does and an answer is
   already in hand, it returns the best gated answer with ``deadline_limited`` set.
2. **Call**: the tier's first candidate; on a provider fault, the next candidate of the
   same tier (same-tier failover); when the whole tier fails, the next tier. Models with
   the logprobs capability are asked for log-probabilities, the gate's confidence signal.
3. **Gate** (:mod:`quorum.server.execute.gate`): pass → return the answer; fail → the
   attempt is REJECTED and the next tier runs. The last tier's answer is returned
   whatever its verdict (unless an earlier answer scored better on the gate); plugged-in
   verifiers (e.g. the learned one, which weighs escalating) judge every tier but the
   last, which has none above it.

The escalation guard (shared by every caller of a route) learns from each tier's
outcome: a pass is recorded when the tier passes, but an escalation only once a later
tier has passed the gate. When no tier passes, the failure is the request's (a schema
no answer can satisfy, a task beyond every model), not the cheap tier's: recording it
would let one caller's requests send every other caller's cascades straight to premium.

The account carries the tiers tried, each gate verdict (on its attempt and as a
``GateEvaluated`` event), the escalation reasons, the cost of answers not used, and the
route's escalation rate when planned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

from quorum.server.domain import (
    Attempt,
    AttemptOutcome,
    Capability,
    CascadeDetail,
    Completion,
    ExecutionPlan,
    ExecutionResult,
    GateVerdict,
    PlanStage,
    RouteRequest,
)
from quorum.server.execute.calls import (
    MIN_ATTEMPT_S,
    CallResult,
    ExecutionContext,
    call_model,
    cut_off,
)
from quorum.server.execute.events import Escalated, GateEvaluated
from quorum.server.execute.gate import GatePolicy, Verifier, evaluate, failure_summary, usable
from quorum.server.execute.single import deadline_exceeded, no_answer
from quorum.server.execute.voters import REPLY_MARGIN_S
from quorum.server.observed import OutcomeStore
from quorum.server.state import route_key
from quorum.server.values import value_type

P95 = 0.95


@value_type
class CascadeRuntime:
    """What a cascade needs beyond the plan: the gate, the route and where outcomes go."""

    gate: GatePolicy
    escalations: OutcomeStore
    agent: str = ""
    route_rate: float = 0.0
    verifiers: Sequence[Verifier] = ()


@value_type
class _Answer:
    """An answer in hand: its call, its verdict and where its attempt sits."""

    result: CallResult
    completion: Completion
    verdict: GateVerdict
    index: int
    tier_rank: int

    def score(self) -> tuple[bool, int, int]:
        passed = sum(c.passed for c in self.verdict.checks)
        return (usable(self.verdict), passed, self.tier_rank)


def _p95_s(ctx: ExecutionContext, stage: PlanStage) -> float | None:
    return ctx.resilience.latency.quantile(stage.candidates[0].model, P95)


def _fits(ctx: ExecutionContext, stage: PlanStage) -> bool:
    p95 = _p95_s(ctx, stage)
    return p95 is None or p95 <= ctx.time_left()


def _with_logprobs(request: RouteRequest, capabilities: frozenset[Capability]) -> RouteRequest:
    if request.params.logprobs or Capability.LOGPROBS not in capabilities:
        return request
    return replace(request, params=replace(request.params, logprobs=True))


async def _call_tier(
    ctx: ExecutionContext,
    request: RouteRequest,
    stage: PlanStage,
    runtime: CascadeRuntime,
    attempts: list[Attempt],
    failed: list[CallResult],
    in_hand: bool,
    reserve: int = 0,
) -> CallResult | None:
    """The tier's first answer, failing over within the tier on provider faults.

    With an answer already in hand, a call still running just before the deadline is
    cancelled so that answer can be returned in time.
    """
    wants_logprobs = runtime.gate.request_logprobs and runtime.gate.min_mean_logprob is not None
    for candidate in stage.candidates:
        if ctx.time_left() < MIN_ATTEMPT_S or ctx.calls_made >= ctx.max_upstream_calls:
            return None
        spec = ctx.catalog.models[candidate.model]
        call_request = _with_logprobs(request, spec.capabilities) if wants_logprobs else request
        started_ms = ctx.elapsed_ms()
        limit = ctx.time_left() if in_hand else None
        ended: list[Attempt] = []  # attempts that ended before a cancellation (retries)
        try:
            async with asyncio.timeout(limit):
                result = await call_model(
                    ctx, call_request, candidate, "tier", reserve=reserve, record=ended
                )
        except TimeoutError:
            why = "cancelled: the deadline is near, an answer is in hand"
            attempts.extend(ended)
            attempts.append(cut_off(ctx, call_request, candidate, "tier", started_ms, why))
            return None
        attempts.extend(result.attempts)
        if result.completion is not None:
            return result
        failed.append(result)
    return None


def _finish(
    answer: _Answer,
    attempts: list[Attempt],
    detail: CascadeDetail,
    reason: str,
) -> ExecutionResult:
    attempt = attempts[answer.index]
    attempts[answer.index] = replace(attempt, outcome=AttemptOutcome.SUCCEEDED, reason=reason)
    wasted = sum(a.cost_usd for i, a in enumerate(attempts) if i != answer.index)
    return ExecutionResult(
        completion=answer.completion,
        model=answer.result.spec.name,
        provider=attempt.provider,
        attempts=tuple(attempts),
        cascade=replace(detail, wasted_cost_usd=wasted),
        simulated=answer.result.simulated,
    )


def _learn(store: OutcomeStore, escalated: Sequence[str], passed: str | None) -> None:
    """Teach the escalation guard, once a tier has passed the gate: each tier that failed
    before it escalated for a reason a model could answer, and the passing tier's route
    (None for the last tier, which has no tier to escalate to) passed."""
    for route in escalated:
        store.record(route, True)
    if passed is not None:
        store.record(passed, False)


async def execute_cascade(
    ctx: ExecutionContext, request: RouteRequest, plan: ExecutionPlan, runtime: CascadeRuntime
) -> ExecutionResult:
    """Run ``plan`` as a cascade; raise with every attempt when no tier answers."""
    stages = [s for s in plan.stages if s.role == "tier"]
    attempts: list[Attempt] = []
    failed: list[CallResult] = []
    answers: list[_Answer] = []
    tiers_tried: list[str] = []
    escalations: list[str] = []
    escalated: list[str] = []  # the routes of tiers whose gate failed, not yet recorded

    def detail(deadline_limited: bool = False) -> CascadeDetail:
        return CascadeDetail(
            tiers_tried=tuple(tiers_tried),
            escalation_reason="; ".join(escalations),
            route_escalation_rate=runtime.route_rate,
            deadline_limited=deadline_limited,
        )

    i = 0
    while i < len(stages):
        stage = stages[i]
        tier = stage.candidates[0].tier
        if not _fits(ctx, stage):
            later = next((j for j in range(i + 1, len(stages)) if _fits(ctx, stages[j])), None)
            p95 = _p95_s(ctx, stage) or 0.0
            why = f"p95 {p95 * 1000:.0f}ms > {ctx.time_left() * 1000:.0f}ms left"
            if later is not None:
                escalations.append(f"{tier}: skipped, {why}")
                i = later
                continue
            if answers:
                best = max(answers, key=_Answer.score)
                escalations.append(f"{tier}: not tried, {why}")
                return _finish(
                    best, attempts, detail(True), "returned: best gated answer before the deadline"
                )
            # Nothing in hand: try anyway, a p95 is not a maximum.
        if ctx.time_left() < MIN_ATTEMPT_S or (answers and ctx.time_left() < REPLY_MARGIN_S * 2):
            break
        tiers_tried.append(tier)
        later_tiers = len(stages) - i - 1  # a call each left for them, whatever retries want
        result = await _call_tier(
            ctx, request, stage, runtime, attempts, failed, bool(answers), later_tiers
        )
        last = i == len(stages) - 1
        if result is None or result.completion is None:
            escalations.append(f"{tier}: no model answered")  # (the last tier's too)
            if not last:
                ctx.sink.emit(
                    Escalated(tier, stages[i + 1].candidates[0].tier, "no model answered")
                )
            i += 1
            continue
        # The verifiers (the learned one asks "is escalating worth it?") advise on going
        # up a tier; the last tier has none above it, so only the gate judges it.
        verifiers = () if last else runtime.verifiers
        verdict = evaluate(request, result.completion, runtime.gate, verifiers)
        ctx.sink.emit(GateEvaluated(result.spec.name, verdict))
        index = len(attempts) - 1
        attempts[index] = replace(attempts[index], gate=verdict)
        answer = _Answer(result, result.completion, verdict, index, result.spec.tier_rank)
        answers.append(answer)
        route = route_key(runtime.agent, tier)
        if verdict.passed:
            _learn(runtime.escalations, escalated, passed=None if last else route)
            return _finish(answer, attempts, detail(), "ok: gate passed")
        if not last:
            escalated.append(route)
        summary = failure_summary(verdict)
        attempts[index] = replace(attempts[index], outcome=AttemptOutcome.REJECTED, reason=summary)
        escalations.append(f"{tier}: {summary}")  # the last tier's too: why none passed
        if last:
            best = max(answers, key=_Answer.score)
            return _finish(best, attempts, detail(), "returned: best answer of the last tier")
        ctx.sink.emit(Escalated(tier, stages[i + 1].candidates[0].tier, summary))
        i += 1
    if answers:
        best = max(answers, key=_Answer.score)
        limited = ctx.time_left() < REPLY_MARGIN_S + MIN_ATTEMPT_S
        return _finish(
            best, attempts, detail(limited), "returned: best gated answer, no higher tier answered"
        )
    if ctx.time_left() < MIN_ATTEMPT_S:
        raise deadline_exceeded(attempts, plan)
    raise no_answer(ctx, attempts, failed, plan)
