"""The consensus strategies: several models in parallel, reconciled by vote or by a judge.

Both start the plan's voters at once, as asyncio tasks. Each answer is gated for the
basics (not empty, not a refusal, valid JSON when asked — :func:`gate.usable`); one
that fails abstains. The rest are normalised (:mod:`quorum.server.execute.normalize`)
and grouped; each vote carries its candidate's weight.

*Majority*: as soon as the leading group cannot be caught by the weight still
outstanding (:func:`vote.decided`), the remaining calls are cancelled — the HTTP
adapters close their upstream connections — and recorded as CANCELLED, charged their
prompt's estimated cost (the provider may bill a call that was cut off). A tie goes
to the group holding the most capable model's answer, or to the judge when
``tie_break: judge``.

*Judge*: every answer is awaited (leaving the judge its observed p95, or its timeout),
then shown to the judge anonymised and shuffled (:mod:`quorum.server.execute.judge`).
Unanimous answers need no judge. A judge that fails, times out or replies with anything
but the strict JSON asked for is replaced by the majority vote, and the response says
why (``JudgeDetail.fallback_reason``). In synthesis mode the judge's own answer is
returned and the candidates stay in the account.

The judge's rationale goes into the response only; it is never logged here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

from quorum.server.domain import (
    Attempt,
    AttemptOutcome,
    Candidate,
    Completion,
    ConsensusDetail,
    ExecutionPlan,
    ExecutionResult,
    JudgeDetail,
    RouteRequest,
)
from quorum.server.execute.calls import MIN_ATTEMPT_S, ExecutionContext, call_model, cut_off
from quorum.server.execute.events import FellBack
from quorum.server.execute.judge import (
    JudgeReplyError,
    JudgeVerdict,
    build_judge_request,
    judge_seed,
    parse_judge_reply,
)
from quorum.server.execute.vote import agreement, leaders, most_capable_group, tally
from quorum.server.execute.voters import (
    ConsensusRuntime,
    account,
    answer_of,
    answer_text,
    gather,
    group_of,
    nothing_to_vote_on,
    record_accuracy,
    representative,
    result_of,
)
from quorum.server.values import value_type

__all__ = ["ConsensusRuntime", "JudgeCall", "ask_judge", "execute_judge", "execute_majority"]

P95 = 0.95
JUDGE_SHARE_WITHOUT_HISTORY = 0.4  # of the time left, kept for a judge never seen before


# ---- the judge ---------------------------------------------------------------------


@value_type
class JudgeCall:
    """One judge call: its attempts (retries included), and a verdict or why there is none."""

    attempts: tuple[Attempt, ...]
    completion: Completion | None
    verdict: JudgeVerdict | None
    order: tuple[int, ...]
    labels: tuple[str, ...]
    failure: str = ""


async def ask_judge(
    ctx: ExecutionContext,
    request: RouteRequest,
    judge: Candidate,
    answers: Sequence[str],
    *,
    seed: int,
    synthesize: bool,
    timeout_s: float,
) -> JudgeCall:
    """Show ``answers`` to ``judge``; never raises for a judge that fails or talks nonsense."""
    spec = ctx.catalog.models[judge.model]
    judge_request, order, labels = build_judge_request(
        request, answers, seed=seed, synthesize=synthesize, capabilities=spec.capabilities
    )
    shown, names = tuple(order), tuple(labels)
    if ctx.calls_made >= ctx.max_upstream_calls:
        return JudgeCall((), None, None, shown, names, "upstream call cap reached")
    limit = min(timeout_s, ctx.time_left())
    if limit < MIN_ATTEMPT_S:
        return JudgeCall((), None, None, shown, names, "no time left for the judge")
    started_ms = ctx.elapsed_ms()
    ended: list[Attempt] = []  # attempts that ended before a timeout (retries)
    try:
        async with asyncio.timeout(limit):
            result = await call_model(ctx, judge_request, judge, "judge", record=ended)
    except TimeoutError:
        why = f"judge timed out after {limit:.3f}s"
        cut = cut_off(ctx, judge_request, judge, "judge", started_ms, why)
        attempt = replace(cut, outcome=AttemptOutcome.FAILED, error_reason="PROVIDER_TIMEOUT")
        return JudgeCall((*ended, attempt), None, None, shown, names, why)
    earlier = result.attempts[:-1]
    if result.completion is None:
        reason = f"judge call failed: {result.attempt.reason}"
        return JudgeCall(result.attempts, None, None, shown, names, reason)
    try:
        verdict = parse_judge_reply(result.completion.content, labels, synthesize)
    except JudgeReplyError as exc:
        attempt = replace(
            result.attempt,
            outcome=AttemptOutcome.REJECTED,
            reason=f"judge reply unusable: {exc}",
            error_reason="JUDGE_REPLY_INVALID",
        )
        return JudgeCall((*earlier, attempt), result.completion, None, shown, names, attempt.reason)
    what = "wrote the final answer" if synthesize else f"scored {len(labels)} candidates"
    attempt = replace(result.attempt, reason=what)
    return JudgeCall((*earlier, attempt), result.completion, verdict, shown, names)


def _judge_pick(call: JudgeCall, ranks: Sequence[tuple[int, float]]) -> tuple[int, list[float]]:
    """The index (into the answers shown) the judge prefers, and every answer's score."""
    assert call.verdict is not None
    scores = [0.0] * len(call.order)
    for label, index in zip(call.labels, call.order, strict=True):
        scores[index] = call.verdict.scores[label]
    top = max(scores)
    tied = [i for i, s in enumerate(scores) if s >= top - 1e-9]
    best = call.verdict.best
    if best and best in call.labels:
        preferred = call.order[call.labels.index(best)]
        if preferred in tied:
            return preferred, scores
    return max(tied, key=lambda i: ranks[i]), scores


def _judge_reserve_s(ctx: ExecutionContext, judge: Candidate, timeout_s: float) -> float:
    p95 = ctx.resilience.latency.quantile(judge.model, P95)
    if p95 is None:
        p95 = ctx.time_left() * JUDGE_SHARE_WITHOUT_HISTORY
    return min(p95, timeout_s)


def _stage(plan: ExecutionPlan, role: str) -> tuple[Candidate, ...]:
    return next((s.candidates for s in plan.stages if s.role == role), ())


# ---- the strategies ----------------------------------------------------------------


async def execute_majority(
    ctx: ExecutionContext, request: RouteRequest, plan: ExecutionPlan, runtime: ConsensusRuntime
) -> ExecutionResult:
    """Weighted majority with early exit; ties by capability or by the judge."""
    policy = runtime.policy
    round_ = await gather(
        ctx,
        request,
        _stage(plan, "voters"),
        runtime,
        early_exit=policy.early_exit,
        until=ctx.deadline,
        reserve=1 if _stage(plan, "judge") else 0,  # a tie-break judge keeps its call
    )
    ballots = round_.ballots()
    groups = tally(ballots)
    if not groups:
        return nothing_to_vote_on(ctx, round_, plan)
    tied = leaders(groups)
    winner = tied[0] if len(tied) == 1 else -1
    tie_break = ""
    judge_detail: JudgeDetail | None = None
    extra: list[Attempt] = []
    judges = _stage(plan, "judge")
    if winner < 0 and policy.tie_break == "judge" and judges:
        reps = [representative(round_, groups, g) for g in tied]
        seed = judge_seed(request.request_id)
        call = await ask_judge(
            ctx,
            request,
            judges[0],
            [answer_text(r.completion) for r in reps if r.completion],
            seed=seed,
            synthesize=False,
            timeout_s=policy.judge_timeout_s,
        )
        extra.extend(call.attempts)
        shown = tuple(reps[i].candidate.model for i in call.order)
        if call.verdict is not None:
            pick, _ = _judge_pick(call, [r.rank for r in reps])
            winner = tied[pick]
            tie_break = f"judge {judges[0].model} chose among {len(tied)} tied groups"
            judge_detail = JudgeDetail(
                judges[0].model, seed, shown, rationale=call.verdict.rationale
            )
        else:
            tie_break = f"judge failed ({call.failure}); "
            judge_detail = JudgeDetail(judges[0].model, seed, shown, fallback_reason=call.failure)
    if winner < 0:
        winner = most_capable_group(groups, tied, ballots)
        tie_break += (
            f"{len(tied)} groups tied: the most capable model's answer "
            f"({representative(round_, groups, winner).candidate.model})"
        )
    chosen = representative(round_, groups, winner)
    record_accuracy(runtime, round_, groups, winner)
    detail = ConsensusDetail(
        answers=tuple(answer_of(v, group_of(v, groups)) for v in round_.voters),
        groups=groups,
        winner_group=winner,
        agreement=agreement(groups, winner, round_.received_weight()),
        early_exit=round_.early_exit,
        normalizer=round_.normalizer,
        judge=judge_detail,
        tie_break=tie_break,
    )
    return result_of(chosen, account(round_, groups, winner, chosen, extra=extra), detail)


async def execute_judge(
    ctx: ExecutionContext, request: RouteRequest, plan: ExecutionPlan, runtime: ConsensusRuntime
) -> ExecutionResult:
    """Every answer to the judge; majority vote when the judge cannot decide."""
    policy = runtime.policy
    judge = _stage(plan, "judge")[0]
    reserve = _judge_reserve_s(ctx, judge, policy.judge_timeout_s)
    round_ = await gather(
        ctx,
        request,
        _stage(plan, "voters"),
        runtime,
        early_exit=False,
        until=max(ctx.clock(), ctx.deadline - reserve),
        reserve=1,  # the judge's call
    )
    seed = judge_seed(request.request_id)
    ballots = round_.ballots()
    groups = tally(ballots)
    voting = [v for v in round_.voters if v.voting]
    if not groups:
        nothing = JudgeDetail(judge.model, seed, (), fallback_reason="no usable answer to judge")
        return nothing_to_vote_on(ctx, round_, plan, nothing)
    call: JudgeCall | None = None
    if len(voting) == 1:
        fallback = "only one usable answer"
    elif len(groups) == 1 and not policy.synthesize:
        fallback = "not needed: every answer agrees"
    else:
        call = await ask_judge(
            ctx,
            request,
            judge,
            [answer_text(v.completion) for v in voting if v.completion],
            seed=seed,
            synthesize=policy.synthesize,
            timeout_s=policy.judge_timeout_s,
        )
        fallback = call.failure
    extra = list(call.attempts) if call is not None else []
    shown = tuple(voting[i].candidate.model for i in call.order) if call is not None else ()
    if call is None or call.verdict is None:
        if call is not None:
            ctx.sink.emit(FellBack(judge.model, "majority", fallback))
        tied = leaders(groups)
        winner = tied[0] if len(tied) == 1 else most_capable_group(groups, tied, ballots)
        chosen = representative(round_, groups, winner)
        tie_break = (
            f"{len(tied)} groups tied: the most capable model's answer ({chosen.candidate.model})"
            if len(tied) > 1
            else ""
        )
        record_accuracy(runtime, round_, groups, winner)
        detail = ConsensusDetail(
            answers=tuple(answer_of(v, group_of(v, groups)) for v in round_.voters),
            groups=groups,
            winner_group=winner,
            agreement=agreement(groups, winner, round_.received_weight()),
            early_exit=False,
            normalizer=round_.normalizer,
            judge=JudgeDetail(judge.model, seed, shown, fallback_reason=fallback),
            tie_break=tie_break,
        )
        return result_of(chosen, account(round_, groups, winner, chosen, extra=extra), detail)
    assert call.verdict is not None
    assert call.completion is not None
    pick, scores = _judge_pick(call, [v.rank for v in voting])
    best = voting[pick]
    winner = group_of(best, groups)
    score_of = {id(v): s for v, s in zip(voting, scores, strict=True)}
    synthesized = policy.synthesize
    detail = ConsensusDetail(
        answers=tuple(
            answer_of(v, group_of(v, groups), score_of.get(id(v))) for v in round_.voters
        ),
        groups=groups,
        winner_group=winner,
        agreement=agreement(groups, winner, round_.received_weight()),
        early_exit=False,
        normalizer=round_.normalizer,
        judge=JudgeDetail(
            judge.model, seed, shown, rationale=call.verdict.rationale, synthesized=synthesized
        ),
    )
    if not synthesized:
        return result_of(best, account(round_, groups, winner, best, extra=extra), detail)
    judge_completion = call.completion
    return ExecutionResult(
        completion=replace(judge_completion, content=call.verdict.answer, mean_logprob=None),
        model=judge.model,
        provider=call.attempts[-1].provider,
        attempts=account(round_, groups, winner, None, synthesized=True, extra=extra),
        consensus=detail,
        simulated=ctx.catalog.models[judge.model].simulated is not None,
    )
