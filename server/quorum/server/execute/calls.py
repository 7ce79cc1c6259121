"""One upstream call, the same way for every strategy.

:func:`call_model` runs one attempt under the provider's breaker, bounded by the time
left before the caller's deadline, applies a 429's Retry-After as a cool-down, and
returns an :class:`~quorum.server.domain.Attempt` with the completion or the error.
Adapter bugs are caught here and recorded as bad responses: a provider fault never
escapes as an unexplained error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog

from quorum.server.breakers import Breakers
from quorum.server.catalog import Catalog, ModelSpec
from quorum.server.domain import (
    Attempt,
    AttemptOutcome,
    Candidate,
    Completion,
    RouteRequest,
    Usage,
)
from quorum.server.errors import (
    ProviderBadResponse,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
)
from quorum.server.execute.events import NULL_SINK, AttemptStarted, EventSink
from quorum.server.providers.base import Provider, ProviderRequest

log = structlog.get_logger("quorum.execute")

MIN_ATTEMPT_S = 0.005  # below this there is no point starting a call
DEFAULT_COOLDOWN_S = 1.0  # a 429 without Retry-After


@dataclass(slots=True)
class ExecutionContext:
    """What executors need: providers, catalog, breakers, the deadline and a call budget."""

    providers: Mapping[str, Provider]
    catalog: Catalog
    breakers: Breakers
    provider_timeouts: Mapping[str, float]
    deadline: float
    max_upstream_calls: int
    clock: Callable[[], float] = time.monotonic
    sink: EventSink = NULL_SINK
    started: float = field(default=0.0)
    calls_made: int = 0

    def __post_init__(self) -> None:
        if not self.started:
            self.started = self.clock()

    def time_left(self) -> float:
        return self.deadline - self.clock()

    def elapsed_ms(self) -> float:
        return (self.clock() - self.started) * 1000.0


@dataclass(frozen=True, slots=True)
class CallResult:
    attempt: Attempt
    completion: Completion | None
    error: ProviderError | None
    spec: ModelSpec


def skipped(
    candidate: Candidate, role: str, reason: str, ctx: ExecutionContext, error_reason: str = ""
) -> Attempt:
    return Attempt(
        model=candidate.model,
        provider=candidate.provider,
        tier=candidate.tier,
        role=role,
        outcome=AttemptOutcome.SKIPPED,
        reason=reason,
        error_reason=error_reason,
        started_ms=ctx.elapsed_ms(),
    )


async def call_model(
    ctx: ExecutionContext,
    request: RouteRequest,
    candidate: Candidate,
    role: str,
) -> CallResult:
    """Call ``candidate`` once for ``request``; never raises a provider error."""
    spec = ctx.catalog.models[candidate.model]
    provider = ctx.providers[spec.provider]
    started_ms = ctx.elapsed_ms()
    start = ctx.clock()
    timeout = min(ctx.time_left(), ctx.provider_timeouts.get(spec.provider, 60.0))
    ctx.calls_made += 1
    ctx.sink.emit(AttemptStarted(spec.name, spec.provider, role))
    error: ProviderError
    try:
        with ctx.breakers.guard(spec.provider):
            try:
                async with asyncio.timeout(timeout + 0.05):
                    completion = await provider.complete(
                        ProviderRequest(spec.model_id, request.messages, request.params, timeout)
                    )
            except TimeoutError:
                raise ProviderTimeout(
                    f"{spec.provider}: no answer within {timeout:.3f}s", provider=spec.provider
                ) from None
            except (ProviderError, asyncio.CancelledError):
                raise
            except Exception as exc:  # an adapter bug must not become an unexplained error
                log.exception("adapter_error", provider=spec.provider, model=spec.name)
                raise ProviderBadResponse(
                    f"{spec.provider}: unexpected {type(exc).__name__} handling the response",
                    provider=spec.provider,
                ) from exc
    except ProviderError as exc:
        error = exc
    else:
        latency = (ctx.clock() - start) * 1000.0
        attempt = Attempt(
            model=spec.name,
            provider=spec.provider,
            tier=spec.tier,
            role=role,
            outcome=AttemptOutcome.SUCCEEDED,
            reason="ok",
            latency_ms=latency,
            usage=completion.usage,
            cost_usd=spec.cost(completion.usage),
            started_ms=started_ms,
        )
        return CallResult(attempt, completion, None, spec)
    if isinstance(error, ProviderRateLimited):
        ctx.breakers.cool_down(spec.provider, error.retry_after_s or DEFAULT_COOLDOWN_S)
    breaker_skip = error.metadata.get("breaker")
    attempt = Attempt(
        model=spec.name,
        provider=spec.provider,
        tier=spec.tier,
        role=role,
        outcome=AttemptOutcome.SKIPPED if breaker_skip else AttemptOutcome.FAILED,
        reason=error.message,
        error_reason=error.reason,
        latency_ms=(ctx.clock() - start) * 1000.0,
        usage=Usage(),
        started_ms=started_ms,
    )
    if breaker_skip:
        ctx.calls_made -= 1  # nothing was sent upstream
    log.info(
        "attempt_failed",
        provider=spec.provider,
        model=spec.name,
        reason=error.reason,
        status=error.status,
    )
    return CallResult(attempt, None, error, spec)
