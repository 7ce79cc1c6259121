"""One upstream call, the same way for every strategy.

:func:`call_model` calls one candidate model and never raises a provider error: it
returns a :class:`CallResult` with the completion or the error and an
:class:`~quorum.server.domain.Attempt` for every request it sent upstream. On the way:

* **Deployment**: the model's deployments whose breaker lets a call through are
  offered to the balancer (:mod:`quorum.server.resilience.balance`); after any failure the call
  moves to a deployment it has not tried (a different upstream: no backoff, no budget).
* **Limits**: the provider's concurrency and per-minute limits (queueing briefly,
  never past the deadline); a refusal is a skipped attempt, so the strategy fails over.
* **Breaker**: the call runs under the deployment's breaker, bounded by the time left
  before the caller's deadline and the provider's timeout.
* **429**: Retry-After cools the deployment down (shared across replicas when state is
  in Redis). When the wait is short (``retry.max_rate_limit_wait_s``) and the deadline
  allows, the call waits it out once and tries again; otherwise it fails over.
* **Quota**: an account out of quota or credit (OpenAI's 429 ``insufficient_quota``,
  Anthropic's 400 credit balance) cools the deployment down for
  :data:`QUOTA_COOLDOWN_S`; calls refused meanwhile say so, not that a 429 came.
* **Retries**: transient faults (5xx, 408, connection errors, malformed bodies) on the same
  deployment are retried up to ``retry.max_retries`` after a jittered exponential
  backoff, within the deadline, only while the provider's retry budget allows, and
  leaving ``reserve`` calls of the request's cap for the candidates still to come.

:func:`with_policy` is that loop on its own, so a stream can be opened under it too.

Adapter bugs are caught here and recorded as bad responses: a provider fault never
escapes as an unexplained error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

import structlog

from quorum.server.catalog import Catalog, Deployment, ModelSpec
from quorum.server.domain import (
    Attempt,
    AttemptOutcome,
    Candidate,
    Completion,
    ResponseFormatType,
    RouteRequest,
    ToolCall,
    Usage,
    missing_forced_call,
)
from quorum.server.errors import (
    AdapterFault,
    CallerDeadlineTimeout,
    ProviderBadResponse,
    ProviderError,
    ProviderIgnoredToolChoice,
    ProviderQuotaExhausted,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from quorum.server.execute.events import NULL_SINK, AttemptStarted, EventSink
from quorum.server.execute.gate import strip_fence
from quorum.server.providers.base import Provider, ProviderRequest, checked_usage
from quorum.server.resilience.balance import whole_answers
from quorum.server.resilience.breakers import MAX_COOLDOWN_S, Breakers
from quorum.server.resilience.limits import Permit
from quorum.server.resilience.runtime import Resilience
from quorum.server.tokens import count_tokens, prompt_tokens
from quorum.server.values import value_type

log = structlog.get_logger("quorum.execute")

MIN_ATTEMPT_S = 0.005  # below this there is no point starting a call
DEFAULT_COOLDOWN_S = 1.0  # a 429 without Retry-After
# A 429 whose Retry-After is 0 (or a date just past) says "now": a pause this short,
# then one retry, rather than the default cool-down or an immediate hammering.
MIN_COOLDOWN_S = 0.05


def cooldown_s(error: ProviderRateLimited) -> float:
    """How long a 429 holds its deployment back: its Retry-After, within
    [MIN_COOLDOWN_S, MAX_COOLDOWN_S] (a huge one must not retire a deployment, nor tell
    a caller to wait longer than the deployment is held back)."""
    if error.retry_after_s is None:
        return DEFAULT_COOLDOWN_S
    return min(max(error.retry_after_s, MIN_COOLDOWN_S), MAX_COOLDOWN_S)


QUOTA_COOLDOWN_S = 60.0  # an account out of quota or credit
DEFAULT_OUTPUT_TOKENS = 512  # for a tokens-per-minute estimate without max_tokens
SATURATED = "PROVIDER_SATURATED"  # attempt error_reason: the provider's configured limit


def quota_cause(error: ProviderQuotaExhausted) -> str:
    """What a quota cool-down follows, as refusals meanwhile say it: the account ran out,
    with the status the vendor gave (Anthropic's is a 400, not a 429)."""
    status = f" (HTTP {error.status})" if error.status else ""
    return f"the account ran out of quota or credit{status}"


T = TypeVar("T")


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
    resilience: Resilience = field(default_factory=Resilience)
    # A stream broken mid-way may restart on the next model (if the model allows it);
    # off for callers that cannot take a restarted answer (the OpenAI front door).
    restart_streams: bool = True

    def __post_init__(self) -> None:
        if not self.started:
            self.started = self.clock()

    def time_left(self) -> float:
        return self.deadline - self.clock()

    def elapsed_ms(self) -> float:
        return (self.clock() - self.started) * 1000.0


@value_type
class CallResult:
    """The outcome of :func:`call_model`: the last attempt, and any before it (retries)."""

    attempt: Attempt
    completion: Completion | None
    error: ProviderError | None
    spec: ModelSpec
    earlier: tuple[Attempt, ...] = ()
    deployment: Deployment | None = None

    @property
    def attempts(self) -> tuple[Attempt, ...]:
        """Every attempt of this call, in order: add these to the account."""
        return (*self.earlier, self.attempt)

    @property
    def simulated(self) -> bool:
        if self.deployment is not None:
            return self.deployment.simulated
        return self.spec.simulated is not None


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


def cut_off(
    ctx: ExecutionContext,
    request: RouteRequest,
    candidate: Candidate,
    role: str,
    started_ms: float,
    why: str,
) -> Attempt:
    """A call cancelled while it was out (a hedge that lost, a voter no longer needed,
    a tier cut short by the deadline). The provider has had the prompt and may bill it
    whole, so the account never says it was free: it counts the prompt's estimated input
    tokens and their cost, a lower bound."""
    used = Usage(prompt_tokens(request.messages), 0)
    return Attempt(
        model=candidate.model,
        provider=candidate.provider,
        tier=candidate.tier,
        role=role,
        outcome=AttemptOutcome.CANCELLED,
        reason=f"{why}; its prompt is counted, estimated, as the provider may bill it",
        latency_ms=ctx.elapsed_ms() - started_ms,
        usage=used,
        cost_usd=ctx.catalog.models[candidate.model].cost(used),
        started_ms=started_ms,
    )


def skip_kind(error: ProviderError | None) -> str:
    """Why nothing was sent: ``open``/``half_open``/``cooling_down`` (breaker), a limit
    name, or ``""`` when the request did go upstream."""
    if error is None:
        return ""
    return error.metadata.get("breaker") or error.metadata.get("limit") or ""


def retry_after_hint(error: ProviderError | None) -> float | None:
    """When the caller could come back, for a rate-limited or saturated attempt."""
    if isinstance(error, ProviderRateLimited):
        return cooldown_s(error)
    if error is not None and "retry_after_s" in error.metadata:
        return float(error.metadata["retry_after_s"])
    return None


def choose_deployment(
    ctx: ExecutionContext, spec: ModelSpec, tried: set[str], *, streaming: bool = False
) -> Deployment:
    """A deployment to call: a callable one not yet tried, picked by the balancer (by
    how soon streams start answering, for a stream).

    When none is callable the least unhealthy is returned; its breaker guard then
    refuses it with the reason.
    """
    deployments = spec.deployments or _implicit(spec)
    pool = [d for d in deployments if d.key not in tried] or list(deployments)
    usable = [d for d in pool if ctx.breakers.callable(d.breaker)]
    if usable:
        series = first_chunk_key if streaming else whole_answers
        return ctx.resilience.balancer.choose(spec, usable, series=series)
    best = pool[0]
    for d in pool[1:]:
        if ctx.breakers.health(d.breaker).better_than(ctx.breakers.health(best.breaker)):
            best = d
    return best


def _implicit(spec: ModelSpec) -> tuple[Deployment, ...]:
    return (
        Deployment(
            spec.provider,
            spec.provider_kind,
            spec.model_id,
            1.0,
            spec.provider,
            spec.simulated is not None,
        ),
    )


def estimate_tokens(request: RouteRequest) -> int:
    """Tokens a call may use, for a tokens-per-minute limit (corrected after the call)."""
    return prompt_tokens(request.messages) + (request.params.max_tokens or DEFAULT_OUTPUT_TOKENS)


async def acquire_permit(
    ctx: ExecutionContext, request: RouteRequest, deployment: Deployment
) -> Permit | None:
    """A slot under the provider's limits, or None when it has none; raises
    :class:`ProviderUnavailable` (``metadata["limit"]``) when refused (also when the
    queue wait would take more than half the time left)."""
    limiter = ctx.resilience.limiters.get(deployment.provider)
    if limiter is None:
        return None
    # Queueing takes at most half the time left: the rest is for the call, or for
    # failing over to a candidate that has room.
    return await limiter.acquire(estimate_tokens(request), ctx.time_left() / 2 - MIN_ATTEMPT_S)


def rate_limit_wait(ctx: ExecutionContext, deployment: Deployment) -> float:
    """Seconds to wait out ``deployment``'s cool-down, or 0 when it should fail over."""
    health = ctx.breakers.health(deployment.breaker)
    remaining = health.cooldown_remaining_s
    if remaining <= 0:
        return 0.0
    allowed = ctx.resilience.retry_policy(deployment.provider).max_rate_limit_wait_s
    if remaining > allowed or ctx.time_left() < remaining + MIN_ATTEMPT_S * 2:
        return 0.0
    return remaining


def failed_attempt(
    spec: ModelSpec,
    deployment: Deployment,
    role: str,
    error: ProviderError,
    *,
    started_ms: float,
    latency_ms: float,
    usage: Usage | None = None,
) -> Attempt:
    kind = skip_kind(error)
    return Attempt(
        model=spec.name,
        provider=deployment.provider,
        tier=spec.tier,
        role=role,
        outcome=AttemptOutcome.SKIPPED if kind else AttemptOutcome.FAILED,
        reason=error.message,
        error_reason=SATURATED if "limit" in error.metadata else error.reason,
        latency_ms=latency_ms,
        usage=usage or Usage(),
        cost_usd=spec.cost(usage) if usage else 0.0,
        started_ms=started_ms,
    )


def unfenced(request: RouteRequest, completion: Completion) -> Completion:
    """``completion`` as the caller gets it: when JSON was asked for, without a Markdown
    code fence around it (some models add one; the caller's JSON parser would choke)."""
    if request.params.response_format.type is ResponseFormatType.TEXT:
        return completion
    content = strip_fence(completion.content)
    return completion if content is completion.content else replace(completion, content=content)


def estimated_usage(request: RouteRequest, text: str, calls: Sequence[ToolCall] = ()) -> Usage:
    """Usage estimated from the prompt and an answer's text and tool calls, for a server
    that reported none (or a stream that broke before it did)."""
    output = count_tokens(text) if text else 0
    output += sum(count_tokens(c.name + c.arguments_json) for c in calls)
    return Usage(prompt_tokens(request.messages), output)


# A caller's deadline that cuts a call short counts against the provider only when it
# left the provider at least this many times its recent p95 latency...
_HASTE_FACTOR = 3.0
# ...or, when the deployment has answered nothing lately (a new replica, a provider that
# has hung since start-up), at least its provider's breaker.cold_timeout_s (default
# 0.5 s): otherwise a provider that never answers would never open its breaker while
# callers' deadlines are short.
_COLD_TIMEOUT_S = 0.5


def first_chunk_key(deployment: Deployment) -> str:
    """The latency series of ``deployment``'s streams: how soon they start answering
    (apart from whole unary answers, which take longer)."""
    return f"{deployment.key}#first"


def timed_out(
    ctx: ExecutionContext,
    deployment: Deployment,
    allowed_s: float,
    limit_s: float,
    what: str,
    *,
    streaming: bool = False,
) -> ProviderTimeout:
    """The error for a call that got ``what`` not within ``allowed_s``: a provider timeout,
    or, when the request's deadline cut it short of ``limit_s`` (the provider's own
    timeout) and of what the deployment usually needs (its provider's
    ``breaker.cold_timeout_s`` when nothing is known), one its breaker does not count.
    The request's deadline is the caller's, or ``server.default_deadline_s`` when the
    caller set none or a longer one."""
    message = f"{deployment.provider}: {what} within {allowed_s:.3f}s"
    if allowed_s < limit_s:
        key = first_chunk_key(deployment) if streaming else deployment.key
        if hasty(ctx.resilience, deployment.provider, key, allowed_s):
            return CallerDeadlineTimeout(
                message + " (the request's deadline)", provider=deployment.provider
            )
    return ProviderTimeout(message, provider=deployment.provider)


def hasty(res: Resilience, provider: str, key: str, allowed_s: float) -> bool:
    """Whether ``allowed_s`` was too short to blame the upstream behind latency series
    ``key`` (of ``provider``) for not answering: under three times its recent p95, or,
    when it has answered nothing lately, under the provider's ``breaker.cold_timeout_s``."""
    usual = res.latency.quantile(key, 0.95)
    if usual is None:
        return allowed_s < res.cold_timeout_s.get(provider, _COLD_TIMEOUT_S)
    return allowed_s < _HASTE_FACTOR * usual


def spent_before_failing(request: RouteRequest, error: ProviderError) -> Usage | None:
    """What a failed call is charged: nothing for a refusal or an error answer, but a
    timeout left the provider reading the prompt (and perhaps writing), and it bills
    that; its prompt, estimated, is a lower bound."""
    if isinstance(error, ProviderTimeout):
        return Usage(prompt_tokens(request.messages), 0)
    return None


def count_call(
    ctx: ExecutionContext, spec: ModelSpec, deployment: Deployment, role: str, first: bool
) -> None:
    """A request is about to go upstream: count it, feed the retry budget, announce it."""
    ctx.calls_made += 1
    if first and (budget := ctx.resilience.budgets.get(deployment.provider)) is not None:
        budget.deposit()
    ctx.sink.emit(AttemptStarted(spec.name, deployment.provider, role))


def adapter_error(provider: str, model: str, exc: Exception) -> ProviderBadResponse:
    """An adapter bug, recorded as a bad response (and logged with its traceback); the
    provider's breaker does not count it."""
    log.exception("adapter_error", provider=provider, model=model)
    error = AdapterFault(
        f"{provider}: unexpected {type(exc).__name__} handling the response", provider=provider
    )
    error.__cause__ = exc
    return error


@value_type
class Sent(Generic[T]):
    """One request upstream (or a refusal before it): its attempt and its outcome."""

    attempt: Attempt
    value: T | None
    error: ProviderError | None


@value_type
class Called(Generic[T]):
    """The last :class:`Sent` of a call, the attempts before it and the deployment used."""

    last: Sent[T]
    earlier: tuple[Attempt, ...]
    deployment: Deployment


Send = Callable[[Deployment, bool], Awaitable[Sent[T]]]


async def call_model(
    ctx: ExecutionContext,
    request: RouteRequest,
    candidate: Candidate,
    role: str,
    *,
    reserve: int = 0,
    record: list[Attempt] | None = None,
) -> CallResult:
    """Call ``candidate`` for ``request`` (with retries by policy); never raises a
    provider error. Retries leave ``reserve`` upstream calls of the cap unused, for
    the candidates the caller may still need. Each attempt that ends before the last
    also goes to ``record`` at once, so a caller that cancels the call keeps them."""
    spec = ctx.catalog.models[candidate.model]

    async def send(deployment: Deployment, first: bool) -> Sent[Completion]:
        return await _send(ctx, request, spec, deployment, role, first)

    called = await with_policy(ctx, spec, send, reserve=reserve, record=record)
    last = called.last
    return CallResult(last.attempt, last.value, last.error, spec, called.earlier, called.deployment)


async def with_policy(
    ctx: ExecutionContext,
    spec: ModelSpec,
    send: Send[T],
    *,
    reserve: int = 0,
    record: list[Attempt] | None = None,
    streaming: bool = False,
) -> Called[T]:
    """Run ``send(deployment, first)`` until it succeeds or the policy says stop
    (``streaming``: ``send`` opens a stream).

    Chooses the deployment each time, waits out a short cool-down once, moves to
    another deployment of the model after any failure, and retries transient faults on
    the same one within the retry policy, the budget, the deadline and the
    upstream-call cap (less ``reserve``: calls kept for later candidates).
    """
    res = ctx.resilience
    earlier: list[Attempt] = []

    def set_aside(attempt: Attempt) -> None:
        earlier.append(attempt)
        if record is not None:
            record.append(attempt)

    tried: set[str] = set()
    retries = 0
    waited = False
    first = True
    previous: tuple[Sent[T], Deployment] | None = None  # the failed send before this one
    while True:
        deployment = choose_deployment(ctx, spec, tried, streaming=streaming)
        if not waited:
            wait = rate_limit_wait(ctx, deployment)
            if wait > 0:
                waited = True
                await asyncio.sleep(wait)
                continue
        if previous is not None and ctx.calls_made + reserve >= ctx.max_upstream_calls:
            # Calls running beside this one (voters, a hedge) used the cap while it
            # waited: the calls kept for later (a judge, the next candidates) stay theirs.
            last, last_deployment = previous
            earlier.pop()  # set aside as an earlier attempt: it is the last one again
            if record is not None:
                record.pop()
            return Called(last, tuple(earlier), last_deployment)
        sent = await send(deployment, first)
        if sent.value is not None:
            return Called(sent, tuple(earlier), deployment)
        error = sent.error
        assert error is not None
        tried.add(deployment.key)
        previous = (sent, deployment)
        kind = skip_kind(error)
        if not kind:
            first = False
        if isinstance(error, ProviderRateLimited):
            ctx.breakers.cool_down(deployment.breaker, cooldown_s(error))
        elif isinstance(error, ProviderQuotaExhausted):
            # Not soon mended: other deployments take the traffic, one call a while
            # later finds out whether it is.
            ctx.breakers.cool_down(deployment.breaker, QUOTA_COOLDOWN_S, quota_cause(error))
        if ctx.time_left() < MIN_ATTEMPT_S or ctx.calls_made >= ctx.max_upstream_calls:
            return Called(sent, tuple(earlier), deployment)
        others = [
            d for d in spec.deployments if d.key not in tried and ctx.breakers.callable(d.breaker)
        ]
        if others:
            # Another deployment of the same model: a different upstream, so no backoff
            # and no retry budget — this is failover within the model.
            set_aside(sent.attempt)
            continue
        if ctx.calls_made + reserve >= ctx.max_upstream_calls:
            return Called(sent, tuple(earlier), deployment)  # leave the rest to others
        if kind or isinstance(error, ProviderRateLimited):
            # Nothing was sent, or the provider asked us to wait: this deployment again
            # once its cool-down is over, if that is soon.
            if not waited and rate_limit_wait(ctx, deployment) > 0:
                set_aside(sent.attempt)
                continue
            return Called(sent, tuple(earlier), deployment)
        policy = res.retry_policy(deployment.provider)
        transient = isinstance(error, ProviderUnavailable | ProviderBadResponse)
        if not transient or retries >= policy.max_retries:
            return Called(sent, tuple(earlier), deployment)
        delay = res.backoff_s(deployment.provider, retries)
        if ctx.time_left() < delay + MIN_ATTEMPT_S * 2:
            return Called(sent, tuple(earlier), deployment)
        budget = res.budgets.get(deployment.provider)
        if budget is not None and not budget.try_spend():
            log.info("retry_budget_exhausted", provider=deployment.provider, model=spec.name)
            return Called(sent, tuple(earlier), deployment)
        retries += 1
        set_aside(sent.attempt)
        tried.discard(deployment.key)
        if delay > 0:
            await asyncio.sleep(delay)


async def _send(
    ctx: ExecutionContext,
    request: RouteRequest,
    spec: ModelSpec,
    deployment: Deployment,
    role: str,
    first: bool,
) -> Sent[Completion]:
    """One unary request upstream (or a refusal before it)."""
    res = ctx.resilience
    started_ms = ctx.elapsed_ms()
    start = ctx.clock()
    permit: Permit | None = None
    error: ProviderError
    try:
        permit = await acquire_permit(ctx, request, deployment)
        provider = ctx.providers[deployment.provider]
        limit = ctx.provider_timeouts.get(deployment.provider, 60.0)
        timeout = min(ctx.time_left(), limit)
        with ctx.breakers.guard(deployment.breaker):
            count_call(ctx, spec, deployment, role, first)
            sent = ctx.clock()
            try:
                with res.balancer.track(deployment):
                    # The adapter keeps to the time limit itself (see Provider.complete):
                    # a second timer here would cost a timer handle per call for nothing.
                    completion = await provider.complete(
                        ProviderRequest(
                            deployment.model_id, request.messages, request.params, timeout
                        )
                    )
                checked_usage(deployment.provider, completion.usage)
            except (TimeoutError, ProviderTimeout):
                raise timed_out(ctx, deployment, timeout, limit, "no answer") from None
            except (ProviderError, asyncio.CancelledError):
                raise
            except Exception as exc:  # an adapter bug must not become an unexplained error
                raise adapter_error(deployment.provider, spec.name, exc) from exc
    except ProviderError as exc:
        error = exc
    else:
        done = ctx.clock()
        res.latency.record(spec.name, done - sent)
        res.latency.record(deployment.key, done - sent)
        completion = unfenced(request, completion)
        if not completion.usage.input_tokens:
            # The server reported no usage (some compatible ones do not): an estimate,
            # so that the call is not recorded as free.
            completion = replace(
                completion,
                usage=estimated_usage(request, completion.content, completion.tool_calls),
            )
        if permit is not None:
            permit.release(completion.usage.input_tokens + completion.usage.output_tokens)
        missing = missing_forced_call(request.params, completion.tool_calls)
        if missing:
            # Paid for, but not what the caller forced: the next candidate may honour it.
            error = ProviderIgnoredToolChoice(
                f"{spec.name}: {missing}", provider=deployment.provider
            )
            attempt = failed_attempt(
                spec,
                deployment,
                role,
                error,
                started_ms=started_ms,
                latency_ms=(done - start) * 1000.0,
                usage=completion.usage,
            )
            log.info("tool_call_missing", provider=deployment.provider, model=spec.name)
            return Sent(attempt, None, error)
        attempt = Attempt(
            model=spec.name,
            provider=deployment.provider,
            tier=spec.tier,
            role=role,
            outcome=AttemptOutcome.SUCCEEDED,
            reason="ok",
            latency_ms=(done - start) * 1000.0,
            usage=completion.usage,
            cost_usd=spec.cost(completion.usage),
            started_ms=started_ms,
        )
        return Sent(attempt, completion, None)
    finally:
        if permit is not None:
            permit.release()
    attempt = failed_attempt(
        spec,
        deployment,
        role,
        error,
        started_ms=started_ms,
        latency_ms=(ctx.clock() - start) * 1000.0,
        usage=spent_before_failing(request, error),
    )
    log.info(
        "attempt_failed",
        provider=deployment.provider,
        model=spec.name,
        reason=error.reason,
        status=error.status,
        skipped=skip_kind(error) or None,
    )
    return Sent(attempt, None, error)
