"""The single strategy: one model, failing over to the next candidate on provider faults.

Candidates come from the plan in order (primary, then fallbacks with the same
capabilities). A failed call — 5xx, 429, timeout, connection error, breaker open —
moves to the next candidate while time is left before the caller's deadline and the
upstream-call cap allows.
"""

from __future__ import annotations

from quorum.server.domain import (
    Attempt,
    ExecutionPlan,
    ExecutionResult,
    RouteRequest,
)
from quorum.server.errors import (
    AllAttemptsFailed,
    DeadlineExceeded,
    ProviderRejected,
    UpstreamRejected,
)
from quorum.server.execute.calls import MIN_ATTEMPT_S, ExecutionContext, call_model, skipped


async def execute_single(
    ctx: ExecutionContext, request: RouteRequest, plan: ExecutionPlan
) -> ExecutionResult:
    """Run ``plan`` with the single strategy; raise with every attempt when nothing answers."""
    attempts: list[Attempt] = []
    rejected = 0
    for stage in plan.stages:
        for candidate in stage.candidates:
            if ctx.time_left() < MIN_ATTEMPT_S:
                raise DeadlineExceeded(
                    "deadline exceeded before an answer was ready", attempts=attempts, plan=plan
                )
            if ctx.calls_made >= ctx.max_upstream_calls:
                attempts.append(skipped(candidate, stage.role, "upstream call cap reached", ctx))
                continue
            result = await call_model(ctx, request, candidate, stage.role)
            attempts.append(result.attempt)
            if result.completion is not None:
                return ExecutionResult(
                    completion=result.completion,
                    model=result.spec.name,
                    provider=result.spec.provider,
                    attempts=tuple(attempts),
                    simulated=result.spec.simulated is not None,
                )
            if isinstance(result.error, ProviderRejected):
                rejected += 1
    if ctx.time_left() < MIN_ATTEMPT_S:
        raise DeadlineExceeded(
            "deadline exceeded before an answer was ready", attempts=attempts, plan=plan
        )
    tried = [a for a in attempts if a.error_reason]
    if tried and rejected == len(tried):
        raise UpstreamRejected(
            "every provider rejected the request: " + attempts[-1].reason,
            attempts=attempts,
            plan=plan,
        )
    raise AllAttemptsFailed(
        f"all {len(attempts)} candidates failed: "
        + "; ".join(f"{a.model}: {a.reason}" for a in attempts),
        attempts=attempts,
        plan=plan,
    )
