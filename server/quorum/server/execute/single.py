"""The single strategy: one model, failing over to the next candidate on provider faults.

Candidates come from the plan in order (primary, then fallbacks with the same
capabilities). A failed call — 5xx, 429, timeout, connection error, breaker open,
provider at its configured limit — moves to the next candidate while time is left
before the caller's deadline and the upstream-call cap allows.

A model configured to hedge (``models.<name>.hedge``) gets a second request, to the
next candidate, when it has not answered within its observed p95 latency; the first
answer wins and the other call is cancelled (and recorded as such).

When nothing answers: every provider refusing the request is INVALID_ARGUMENT, every
candidate rate-limited or saturated is RESOURCE_EXHAUSTED with a retry delay, anything
else UNAVAILABLE with every attempt.
"""

from __future__ import annotations

import asyncio
import contextlib

from quorum.server.domain import (
    Attempt,
    Candidate,
    ExecutionPlan,
    ExecutionResult,
    RouteRequest,
)
from quorum.server.errors import (
    AllAttemptsFailed,
    DeadlineExceeded,
    ExecutionFailed,
    ProviderRateLimited,
    ProviderRejected,
    UpstreamRejected,
    UpstreamThrottled,
)
from quorum.server.execute.calls import (
    MIN_ATTEMPT_S,
    CallResult,
    ExecutionContext,
    call_model,
    cut_off,
    retry_after_hint,
    skip_kind,
    skipped,
)

HEDGE_ROLE = "hedge"
_THROTTLED_SKIPS = ("cooling_down", "concurrency", "requests_per_minute", "tokens_per_minute")


async def execute_single(
    ctx: ExecutionContext, request: RouteRequest, plan: ExecutionPlan
) -> ExecutionResult:
    """Run ``plan`` with the single strategy; raise with every attempt when nothing answers."""
    queue = [(stage.role, c) for stage in plan.stages for c in stage.candidates]
    attempts: list[Attempt] = []
    results: list[CallResult] = []
    index = 0
    while index < len(queue):
        role, candidate = queue[index]
        index += 1
        if ctx.time_left() < MIN_ATTEMPT_S:
            raise deadline_exceeded(attempts, plan)
        if ctx.calls_made >= ctx.max_upstream_calls:
            attempts.append(skipped(candidate, role, "upstream call cap reached", ctx))
            continue
        spec = ctx.catalog.models[candidate.model]
        delay = ctx.resilience.hedge_delay_s(spec)
        if delay is not None and index < len(queue) and delay < ctx.time_left():
            winner, done, hedged = await _hedged(
                ctx, request, (role, candidate), queue[index], delay, attempts
            )
            index += 1 if hedged else 0
        else:
            result = await call_model(ctx, request, candidate, role, reserve=len(queue) - index)
            attempts.extend(result.attempts)
            winner, done = (result if result.completion is not None else None), [result]
        if winner is not None and winner.completion is not None:
            return ExecutionResult(
                completion=winner.completion,
                model=winner.spec.name,
                provider=winner.attempt.provider,
                attempts=tuple(attempts),
                simulated=winner.simulated,
            )
        results.extend(done)
    raise no_answer(ctx, attempts, results, plan)


async def _hedged(
    ctx: ExecutionContext,
    request: RouteRequest,
    first: tuple[str, Candidate],
    second: tuple[str, Candidate],
    delay: float,
    attempts: list[Attempt],
) -> tuple[CallResult | None, list[CallResult], bool]:
    """Call ``first``; after ``delay`` without an answer also ``second``. Returns the
    winner (if any), the finished calls, and whether ``second`` was used."""
    # What each call tried before its current attempt: kept if the call is cancelled.
    earlier: dict[asyncio.Task[CallResult], list[Attempt]] = {}
    primary_tried: list[Attempt] = []
    primary = asyncio.create_task(
        call_model(ctx, request, first[1], first[0], reserve=1, record=primary_tried)
    )
    earlier[primary] = primary_tried
    tasks: dict[asyncio.Task[CallResult], tuple[Candidate, str, float]] = {
        primary: (first[1], first[0], ctx.elapsed_ms())
    }
    finished: list[CallResult] = []
    try:
        done, _ = await asyncio.wait({primary}, timeout=delay)
        if done or ctx.calls_made >= ctx.max_upstream_calls or ctx.time_left() < MIN_ATTEMPT_S:
            result = await primary
            attempts.extend(result.attempts)
            return (result if result.completion is not None else None), [result], False
        hedge_tried: list[Attempt] = []
        hedge = asyncio.create_task(
            call_model(ctx, request, second[1], HEDGE_ROLE, record=hedge_tried)
        )
        earlier[hedge] = hedge_tried
        tasks[hedge] = (second[1], HEDGE_ROLE, ctx.elapsed_ms())
        pending: set[asyncio.Task[CallResult]] = {primary, hedge}
        winner: CallResult | None = None
        while pending and winner is None:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=lambda t: t is not primary):
                result = task.result()
                attempts.extend(result.attempts)
                finished.append(result)
                if winner is None and result.completion is not None:
                    winner = result
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            candidate, role, started_ms = tasks[task]
            attempts.extend(earlier[task])  # its retries' earlier attempts went upstream too
            answered = winner.spec.name if winner else "another call"
            why = f"cancelled: {answered} answered first"
            attempts.append(cut_off(ctx, request, candidate, role, started_ms, why))
        return winner, finished, True
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def deadline_exceeded(attempts: list[Attempt], plan: ExecutionPlan) -> DeadlineExceeded:
    """Time ran out; the message says what the last attempt was doing when it did."""
    message = "deadline exceeded before an answer was ready"
    if attempts:
        last = attempts[-1]
        message += f" (last attempt: {last.model}, {last.reason})"
    return DeadlineExceeded(message, attempts=attempts, plan=plan)


def no_answer(
    ctx: ExecutionContext, attempts: list[Attempt], results: list[CallResult], plan: ExecutionPlan
) -> ExecutionFailed:
    """The error for a run where no candidate answered."""
    if ctx.time_left() < MIN_ATTEMPT_S:
        return deadline_exceeded(attempts, plan)
    errors = [r.error for r in results if r.error is not None]
    if errors and all(isinstance(e, ProviderRejected) for e in errors):
        return UpstreamRejected(
            "every provider rejected the request: " + errors[-1].message,
            attempts=attempts,
            plan=plan,
        )
    throttled = [
        r
        for r in results
        if isinstance(r.error, ProviderRateLimited) or skip_kind(r.error) in _THROTTLED_SKIPS
    ]
    if results and len(throttled) == len(results):
        hints: list[float] = []
        for r in throttled:
            hint = retry_after_hint(r.error)
            if skip_kind(r.error) == "cooling_down" and r.deployment is not None:
                hint = ctx.breakers.health(r.deployment.breaker).cooldown_remaining_s
            if hint is not None:
                hints.append(hint)
        causes = sorted({skip_kind(r.error) or "rate_limited" for r in throttled})
        return UpstreamThrottled(
            "every candidate is rate-limited or at its capacity: "
            + "; ".join(f"{a.model}: {a.reason}" for a in attempts),
            attempts=attempts,
            plan=plan,
            retry_after_s=round(min(hints), 3) if hints else None,
            metadata={"causes": ",".join(causes)},
        )
    return all_failed(attempts, plan)


def all_failed(attempts: list[Attempt], plan: ExecutionPlan) -> ExecutionFailed:
    return AllAttemptsFailed(
        f"all {len(attempts)} candidates failed: "
        + "; ".join(f"{a.model}: {a.reason}" for a in attempts),
        attempts=attempts,
        plan=plan,
    )
