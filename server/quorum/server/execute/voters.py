"""Calling a consensus's voters in parallel, and the account of what each one did.

:func:`gather` starts every voter as an asyncio task and collects answers as they
arrive: each is gated for the basics (:func:`~quorum.server.execute.gate.usable`) —
one that fails abstains — then normalised into a ballot. With early exit it stops as
soon as the leading group cannot be caught by the weight still outstanding, cancels the
remaining calls (the HTTP adapters close their upstream connections) and records them
as CANCELLED attempts, charged their prompt's estimated cost: the provider may bill a
call that was cut off.

:func:`account` then marks every answered attempt by how the vote used it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from quorum.server.domain import (
    Attempt,
    AttemptOutcome,
    Candidate,
    CandidateAnswer,
    Completion,
    ConsensusDetail,
    ExecutionPlan,
    ExecutionResult,
    GateVerdict,
    JudgeDetail,
    RouteRequest,
    VoteGroup,
)
from quorum.server.errors import ExecutionFailed
from quorum.server.execute.calls import (
    MIN_ATTEMPT_S,
    CallResult,
    ExecutionContext,
    call_model,
    cut_off,
)
from quorum.server.execute.events import Voted
from quorum.server.execute.gate import GatePolicy, evaluate, failure_summary, usable
from quorum.server.execute.normalize import canonical_json, normalize, resolve
from quorum.server.execute.single import deadline_exceeded, no_answer
from quorum.server.execute.vote import Ballot, decided, tally
from quorum.server.observed import OutcomeStore
from quorum.server.policy import ConsensusPolicy
from quorum.server.state import accuracy_key
from quorum.server.values import value_type

#: Execution ends this long before the caller's deadline (the router sets ctx.deadline so),
#: so the reply — an answer, or the error with its attempts — gets out in time.
REPLY_MARGIN_S = 0.03


@value_type
class ConsensusRuntime:
    """What a consensus needs beyond the plan: its policy, the gate, and the task."""

    policy: ConsensusPolicy
    gate: GatePolicy
    accuracy: OutcomeStore
    task: str = ""


@dataclass(slots=True)
class Voter:
    candidate: Candidate
    rank: tuple[int, float]
    started_ms: float = 0.0
    result: CallResult | None = None
    verdict: GateVerdict | None = None
    normalized: str = ""
    cancelled: bool = False
    attempts: list[Attempt] = field(default_factory=list)
    ended: list[Attempt] = field(default_factory=list)  # retries ended while it ran

    @property
    def completion(self) -> Completion | None:
        return self.result.completion if self.result is not None else None

    @property
    def voting(self) -> bool:
        return bool(self.normalized)


@dataclass(slots=True)
class Round:
    voters: list[Voter]
    normalizer: str
    early_exit: bool = False
    timed_out: bool = False
    failed: list[CallResult] = field(default_factory=list)

    def ballots(self) -> list[Ballot]:
        return [
            Ballot(v.candidate.model, v.normalized, v.candidate.weight, v.rank)
            for v in self.voters
            if v.voting
        ]

    def received_weight(self) -> float:
        return sum(v.candidate.weight for v in self.voters if v.completion is not None)


# ---- calling the voters ------------------------------------------------------------


def unsent(ctx: ExecutionContext, voter: Voter, outcome: AttemptOutcome, why: str) -> Attempt:
    c = voter.candidate
    return Attempt(
        model=c.model,
        provider=c.provider,
        tier=c.tier,
        role="voter",
        outcome=outcome,
        reason=why,
        latency_ms=ctx.elapsed_ms() - voter.started_ms if voter.started_ms else 0.0,
        started_ms=voter.started_ms or ctx.elapsed_ms(),
    )


def _canonical_arguments(arguments_json: str) -> str:
    return canonical_json(arguments_json or "{}") or arguments_json.strip()


def canonical_calls(completion: Completion) -> str:
    """The tool calls of an answer, canonical: names and arguments (keys sorted, no
    spacing), so equal calls vote together and different ones never do."""
    return ";".join(
        f"call:{c.name}({_canonical_arguments(c.arguments_json)})" for c in completion.tool_calls
    )


def answer_text(completion: Completion) -> str:
    """What a judge is shown of an answer: its text, then each tool call it makes."""
    calls = [
        f"[calls tool {c.name} with arguments {_canonical_arguments(c.arguments_json)}]"
        for c in completion.tool_calls
    ]
    if not calls:
        return completion.content
    return "\n".join([completion.content, *calls] if completion.content.strip() else calls)


def receive(
    ctx: ExecutionContext,
    request: RouteRequest,
    runtime: ConsensusRuntime,
    round_: Round,
    voter: Voter,
    result: CallResult,
) -> None:
    voter.result = result
    voter.attempts.extend(result.attempts)
    if result.completion is None:
        round_.failed.append(result)
        return
    voter.verdict = evaluate(request, result.completion, runtime.gate)
    if usable(voter.verdict):
        completion = result.completion
        if completion.tool_calls:
            # A call answer is its calls: the same tool with the same arguments, however
            # they are spaced or ordered, whatever the text normaliser would make of them.
            voter.normalized = canonical_calls(completion)
        else:
            voter.normalized = normalize(round_.normalizer, completion.content)
    ctx.sink.emit(Voted(answer_of(voter, -1)))


async def gather(
    ctx: ExecutionContext,
    request: RouteRequest,
    candidates: Sequence[Candidate],
    runtime: ConsensusRuntime,
    *,
    early_exit: bool,
    until: float,
    reserve: int = 0,
) -> Round:
    """Call every voter at once; stop when the vote is decided (early exit) or at ``until``.
    Voters' retries leave ``reserve`` upstream calls of the cap (the judge's)."""
    normalizer = resolve(runtime.policy.normalizer, request, runtime.task)
    round_ = Round([Voter(c, rank_of(ctx, c)) for c in candidates], normalizer)
    tasks: dict[asyncio.Task[CallResult], Voter] = {}
    for voter in round_.voters:
        if ctx.calls_made + len(tasks) + reserve >= ctx.max_upstream_calls:
            voter.attempts.append(
                unsent(ctx, voter, AttemptOutcome.SKIPPED, "upstream call cap reached")
            )
            continue
        voter.started_ms = ctx.elapsed_ms()
        call = call_model(
            ctx, request, voter.candidate, "voter", reserve=reserve, record=voter.ended
        )
        tasks[asyncio.create_task(call)] = voter
    pending = set(tasks)
    try:
        while pending:
            timeout = until - ctx.clock()
            if timeout <= 0:
                round_.timed_out = True
                break
            done, pending = await asyncio.wait(
                pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for task in sorted(done, key=lambda t: tasks[t].started_ms):
                receive(ctx, request, runtime, round_, tasks[task], task.result())
            if early_exit and pending:
                outstanding = sum(tasks[t].candidate.weight for t in pending)
                if decided(tally(round_.ballots()), outstanding) is not None:
                    round_.early_exit = True
                    break
    finally:
        why = "cancelled: the vote was already decided"
        if not round_.early_exit:
            why = "cancelled: no time left"
        for task in pending:
            task.cancel()
        for task in pending:
            voter = tasks[task]
            try:
                result = await task
            except asyncio.CancelledError:
                voter.cancelled = True
                c = voter.candidate
                voter.attempts.extend(voter.ended)  # its retries before the cancellation
                voter.attempts.append(cut_off(ctx, request, c, "voter", voter.started_ms, why))
            else:  # it answered before the cancellation landed: count it
                receive(ctx, request, runtime, round_, voter, result)
    return round_


def rank_of(ctx: ExecutionContext, candidate: Candidate) -> tuple[int, float]:
    spec = ctx.catalog.models[candidate.model]
    return (spec.tier_rank, spec.blended_price)


# ---- the account -------------------------------------------------------------------


def answer_of(voter: Voter, group: int, score: float | None = None) -> CandidateAnswer:
    return CandidateAnswer(
        model=voter.candidate.model,
        normalized=voter.normalized,
        group=group,
        weight=voter.candidate.weight,
        cancelled=voter.cancelled,
        judge_score=score,
    )


def group_of(voter: Voter, groups: Sequence[VoteGroup]) -> int:
    if voter.voting:
        for i, group in enumerate(groups):
            if group.normalized == voter.normalized:
                return i
    return -1


def representative(round_: Round, groups: Sequence[VoteGroup], group: int) -> Voter:
    """The most capable member of ``group``: its answer is the one returned."""
    members = [v for v in round_.voters if group_of(v, groups) == group]
    return max(members, key=lambda v: v.rank)


def account(
    round_: Round,
    groups: Sequence[VoteGroup],
    winner: int,
    chosen: Voter | None,
    *,
    synthesized: bool = False,
    extra: Sequence[Attempt] = (),
) -> tuple[Attempt, ...]:
    """Every attempt in start order, each answered one marked by how the vote used it."""
    out: list[Attempt] = list(extra)
    for voter in round_.voters:
        attempts = list(voter.attempts)
        if voter.completion is not None and voter.verdict is not None and attempts:
            last, group = attempts[-1], group_of(voter, groups)
            if voter is chosen:
                outcome, why = AttemptOutcome.SUCCEEDED, "answer returned"
            elif not voter.voting:
                why = (
                    failure_summary(voter.verdict)
                    if not usable(voter.verdict)
                    else "no answer of the expected kind"
                )
                outcome, why = AttemptOutcome.REJECTED, f"abstained: {why}"
            elif synthesized:
                outcome, why = AttemptOutcome.SUCCEEDED, "used in the judge's synthesis"
            elif group == winner:
                outcome, why = AttemptOutcome.SUCCEEDED, "agreed with the returned answer"
            else:
                outcome, why = AttemptOutcome.OUTVOTED, f"outvoted (group {group})"
            attempts[-1] = replace(last, outcome=outcome, reason=why, gate=voter.verdict)
        out.extend(attempts)
    return tuple(sorted(out, key=lambda a: a.started_ms))


def record_accuracy(
    runtime: ConsensusRuntime, round_: Round, groups: Sequence[VoteGroup], winner: int
) -> None:
    voting = [v for v in round_.voters if v.voting]
    if len(voting) < 2 or winner < 0:
        return
    for voter in voting:
        key = accuracy_key(voter.candidate.model, runtime.task)
        runtime.accuracy.record(key, group_of(voter, groups) == winner)


def failure(
    ctx: ExecutionContext, round_: Round, plan: ExecutionPlan, extra: Sequence[Attempt] = ()
) -> ExecutionFailed:
    attempts = sorted(
        [a for v in round_.voters for a in v.attempts] + list(extra), key=lambda a: a.started_ms
    )
    # Voting stops a reply margin before the deadline: running out of time there is a
    # deadline, not an unavailable provider.
    if round_.timed_out or ctx.time_left() < MIN_ATTEMPT_S:
        return deadline_exceeded(attempts, plan)
    # e.g. every voter rate-limited: RESOURCE_EXHAUSTED with a retry delay and the attempts
    return no_answer(ctx, attempts, round_.failed, plan)


def result_of(
    chosen: Voter, attempts: tuple[Attempt, ...], detail: ConsensusDetail
) -> ExecutionResult:
    assert chosen.result is not None
    assert chosen.result.completion is not None
    return ExecutionResult(
        completion=chosen.result.completion,
        model=chosen.candidate.model,
        provider=chosen.result.attempt.provider,
        attempts=attempts,
        consensus=detail,
        simulated=chosen.result.simulated,
    )


def nothing_to_vote_on(
    ctx: ExecutionContext, round_: Round, plan: ExecutionPlan, judge: JudgeDetail | None = None
) -> ExecutionResult:
    """Every answer abstained: return the most capable one, saying so; or fail."""
    answered = [v for v in round_.voters if v.completion is not None]
    if not answered:
        raise failure(ctx, round_, plan)
    chosen = max(answered, key=lambda v: v.rank)
    detail = ConsensusDetail(
        answers=tuple(answer_of(v, -1) for v in round_.voters),
        groups=(),
        winner_group=-1,
        agreement=0.0,
        early_exit=round_.early_exit,
        normalizer=round_.normalizer,
        judge=judge,
        tie_break="no usable answer to vote on: the most capable model's answer",
    )
    return result_of(chosen, account(round_, (), -1, chosen), detail)
