"""The call policy against a scripted provider: retries, budget, deployments, 429, hedging."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from quorum.server.catalog import breaker_keys, build_catalog
from quorum.server.config import Config, parse_config
from quorum.server.domain import (
    Attempt,
    AttemptOutcome,
    BreakerState,
    Candidate,
    Completion,
    ExecutionPlan,
    ExecutionResult,
    GenerationParams,
    Message,
    PlanStage,
    ResponseFormat,
    ResponseFormatType,
    Role,
    RouteRequest,
    Strategy,
    Usage,
)
from quorum.server.errors import (
    CallerDeadlineTimeout,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    UpstreamThrottled,
)
from quorum.server.execute.calls import ExecutionContext, call_model
from quorum.server.execute.events import Chunk
from quorum.server.execute.single import execute_single
from quorum.server.execute.stream import EventQueue, forward, stream_single
from quorum.server.providers.base import ProviderRequest, StreamDelta
from quorum.server.resilience.breakers import Breakers
from quorum.server.resilience.runtime import build_resilience

Step = BaseException | float  # an error to raise, or seconds to take before answering


class Scripted:
    """A provider that follows a script per model id; answers "ok" by default."""

    def __init__(self, name: str, script: dict[str, list[Step]] | None = None) -> None:
        self._name = name
        self.script = script or {}
        self.calls: list[str] = []
        self.cancelled = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> str:
        return "openai"

    async def complete(self, request: ProviderRequest) -> Completion:
        self.calls.append(request.model_id)
        steps = self.script.get(request.model_id, [])
        step = steps.pop(0) if steps else 0.0
        if isinstance(step, BaseException):
            raise step
        try:
            # As every adapter must (see Provider.complete): no answer within the
            # request's time limit is a timeout.
            await asyncio.sleep(min(step, request.timeout_s))
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if step > request.timeout_s:
            raise ProviderTimeout(f"{self._name}: no answer", provider=self._name)
        return Completion(f"{self._name}:{request.model_id}", usage=Usage(10, 5))

    def stream(self, request: ProviderRequest) -> AsyncIterator[StreamDelta]:
        raise NotImplementedError

    async def close(self) -> None:
        return None


def _config(providers: dict[str, Any], models: dict[str, Any]) -> Config:
    entries = {
        name: {"tier": "t", "input_usd_per_mtok": 1.0 + i, "output_usd_per_mtok": 1.0} | fields
        for i, (name, fields) in enumerate(models.items())
    }
    return parse_config(
        {
            "providers": {
                n: {"kind": "openai", "base_url": "http://x"} | p for n, p in providers.items()
            },
            "tiers": ["t"],
            "models": entries,
        }
    )


def _ctx(
    config: Config, providers: dict[str, Scripted], *, deadline_s: float = 5.0, cap: int = 8
) -> ExecutionContext:
    catalog = build_catalog(config)
    return ExecutionContext(
        providers=providers,
        catalog=catalog,
        breakers=Breakers(
            {n: p.breaker for n, p in config.providers.items()}, deployments=breaker_keys(catalog)
        ),
        provider_timeouts={n: p.timeout_s for n, p in config.providers.items()},
        deadline=time.monotonic() + deadline_s,
        max_upstream_calls=cap,
        resilience=build_resilience(config, seed=7),
    )


def _candidate(ctx: ExecutionContext, model: str) -> Candidate:
    spec = ctx.catalog.models[model]
    return Candidate(spec.name, spec.provider, spec.tier, 0.0)


REQUEST = RouteRequest("r", (Message(Role.USER, "hi"),))


def _fault(provider: str = "a") -> ProviderUnavailable:
    return ProviderUnavailable(f"{provider}: HTTP 503", provider=provider, status=503)


async def test_transient_faults_are_retried_within_max_retries() -> None:
    cfg = _config(
        {"a": {"retry": {"max_retries": 2, "backoff_base_s": 0.001}}}, {"m": {"provider": "a"}}
    )
    a = Scripted("a", {"m": [_fault(), _fault()]})
    ctx = _ctx(cfg, {"a": a})
    result = await call_model(ctx, REQUEST, _candidate(ctx, "m"), "primary")
    assert result.completion is not None
    assert [x.outcome for x in result.attempts] == [
        AttemptOutcome.FAILED,
        AttemptOutcome.FAILED,
        AttemptOutcome.SUCCEEDED,
    ]
    assert ctx.calls_made == 3 and a.calls == ["m", "m", "m"]


async def test_no_retry_by_default_nor_for_timeouts() -> None:
    cfg = _config(
        {"a": {}, "b": {"retry": {"max_retries": 3}}},
        {"m": {"provider": "a"}, "n": {"provider": "b"}},
    )
    a = Scripted("a", {"m": [_fault()]})
    b = Scripted("b", {"n": [ProviderTimeout("b: slow", provider="b")]})
    ctx = _ctx(cfg, {"a": a, "b": b})
    assert (await call_model(ctx, REQUEST, _candidate(ctx, "m"), "primary")).completion is None
    assert (await call_model(ctx, REQUEST, _candidate(ctx, "n"), "primary")).completion is None
    assert a.calls == ["m"] and b.calls == ["n"]


async def test_retries_stop_at_the_budget() -> None:
    cfg = _config(
        {
            "a": {
                "retry": {
                    "max_retries": 5,
                    "backoff_base_s": 0,
                    "budget_ratio": 0.0,
                    "budget_min_per_s": 0,
                },
                "breaker": {"fail_max": 1000},
            }
        },
        {"m": {"provider": "a"}},
    )
    a = Scripted("a", {"m": [_fault() for _ in range(100)]})
    ctx = _ctx(cfg, {"a": a}, cap=64)
    for _ in range(5):
        await call_model(ctx, REQUEST, _candidate(ctx, "m"), "primary")
    # Five first calls, plus the budget's initial allowance of ten retries — not 25.
    assert len(a.calls) == 5 + 10


async def test_retries_respect_the_upstream_call_cap() -> None:
    cfg = _config(
        {"a": {"retry": {"max_retries": 5, "backoff_base_s": 0}}}, {"m": {"provider": "a"}}
    )
    a = Scripted("a", {"m": [_fault() for _ in range(10)]})
    ctx = _ctx(cfg, {"a": a}, cap=2)
    result = await call_model(ctx, REQUEST, _candidate(ctx, "m"), "primary")
    assert result.completion is None and ctx.calls_made == 2


async def test_short_retry_after_is_waited_out_long_one_fails_over() -> None:
    cfg = _config(
        {"a": {"retry": {"max_rate_limit_wait_s": 0.2}}, "b": {}},
        {"m": {"provider": "a"}, "n": {"provider": "b"}},
    )
    a = Scripted("a", {"m": [ProviderRateLimited("a: 429", provider="a", retry_after_s=0.05)]})
    ctx = _ctx(cfg, {"a": a, "b": Scripted("b")})
    t0 = time.monotonic()
    result = await call_model(ctx, REQUEST, _candidate(ctx, "m"), "primary")
    assert result.completion is not None and a.calls == ["m", "m"]
    assert time.monotonic() - t0 >= 0.05
    assert [x.error_reason for x in result.attempts] == ["PROVIDER_RATE_LIMITED", ""]

    a.script["m"] = [ProviderRateLimited("a: 429", provider="a", retry_after_s=30)]
    plan = _plan(ctx, "m", "n")
    answer = await execute_single(ctx, REQUEST, plan)
    assert answer.model == "n"
    assert ctx.breakers.health("a").cooldown_remaining_s == pytest.approx(30, abs=1)


async def test_every_candidate_rate_limited_is_resource_exhausted_with_a_delay() -> None:
    cfg = _config(
        {
            "a": {"retry": {"max_rate_limit_wait_s": 0}},
            "b": {"retry": {"max_rate_limit_wait_s": 0}},
        },
        {"m": {"provider": "a"}, "n": {"provider": "b"}},
    )
    a = Scripted("a", {"m": [ProviderRateLimited("a: 429", provider="a", retry_after_s=7)]})
    b = Scripted("b", {"n": [ProviderRateLimited("b: 429", provider="b", retry_after_s=3)]})
    ctx = _ctx(cfg, {"a": a, "b": b})
    with pytest.raises(UpstreamThrottled) as info:
        await execute_single(ctx, REQUEST, _plan(ctx, "m", "n"))
    assert info.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.value.retry_after_s == pytest.approx(3, abs=0.1)
    assert info.value.reason == "UPSTREAM_THROTTLED"
    # The account keeps what was tried (a budget settles to their cost: nothing).
    assert [(a.model, a.error_reason) for a in info.value.attempts] == [
        ("m", "PROVIDER_RATE_LIMITED"),
        ("n", "PROVIDER_RATE_LIMITED"),
    ]
    assert sum(a.cost_usd for a in info.value.attempts) == 0


async def test_a_failing_deployment_moves_the_call_to_another() -> None:
    cfg = _config(
        {"east": {}, "west": {}},
        {
            "llama": {
                "deployments": [
                    {"provider": "east", "weight": 100},
                    {"provider": "west", "weight": 1},
                ]
            }
        },
    )
    east = Scripted("east", {"llama": [_fault("east") for _ in range(20)]})
    west = Scripted("west")
    ctx = _ctx(cfg, {"east": east, "west": west})
    answered = []
    for _ in range(10):
        ctx.calls_made = 0  # a new request, same breakers
        result = await call_model(ctx, REQUEST, _candidate(ctx, "llama"), "primary")
        assert result.completion is not None
        answered.append(result.attempt.provider)
    assert set(answered) == {"west"}
    # east's own breaker opened (fail_max 5); west's stayed closed; no retry policy needed
    assert len(east.calls) == 5
    assert not ctx.breakers.callable("east/llama") and ctx.breakers.callable("west/llama")


async def test_weighted_balancing_follows_weights() -> None:
    cfg = _config(
        {"east": {}, "west": {}},
        {
            "llama": {
                "deployments": [
                    {"provider": "east", "weight": 3},
                    {"provider": "west", "weight": 1},
                ]
            }
        },
    )
    east, west = Scripted("east"), Scripted("west")
    ctx = _ctx(cfg, {"east": east, "west": west}, cap=1000)
    for _ in range(400):
        await call_model(ctx, REQUEST, _candidate(ctx, "llama"), "primary")
    assert 0.65 < len(east.calls) / 400 < 0.85


async def test_least_outstanding_spreads_concurrent_calls() -> None:
    cfg = _config(
        {"r1": {}, "r2": {}},
        {
            "local": {
                "balance": "least_outstanding",
                "deployments": [{"provider": "r1"}, {"provider": "r2"}],
            }
        },
    )
    r1, r2 = Scripted("r1", {"local": [0.05] * 10}), Scripted("r2", {"local": [0.05] * 10})
    ctx = _ctx(cfg, {"r1": r1, "r2": r2}, cap=100)
    await asyncio.gather(
        *(call_model(ctx, REQUEST, _candidate(ctx, "local"), "p") for _ in range(10))
    )
    assert len(r1.calls) == len(r2.calls) == 5


async def test_lowest_latency_prefers_the_faster_deployment() -> None:
    cfg = _config(
        {"slow": {}, "fast": {}},
        {
            "m": {
                "balance": "lowest_latency",
                "deployments": [{"provider": "slow"}, {"provider": "fast"}],
            }
        },
    )
    slow, fast = Scripted("slow", {"m": [0.03] * 100}), Scripted("fast")
    ctx = _ctx(cfg, {"slow": slow, "fast": fast}, cap=100)
    for _ in range(40):
        await call_model(ctx, REQUEST, _candidate(ctx, "m"), "p")
    assert len(fast.calls) > 30


class SlowToStartStreams(Scripted):
    """Streams whose first chunk comes after the model's next scripted delay."""

    def stream(self, request: ProviderRequest) -> AsyncIterator[StreamDelta]:
        self.calls.append(request.model_id)
        steps = self.script.get(request.model_id, [])
        delay = steps.pop(0) if steps else 0.0

        async def deltas() -> AsyncIterator[StreamDelta]:
            await asyncio.sleep(delay if isinstance(delay, float) else 0.0)
            yield StreamDelta(text="hi")
            yield StreamDelta(finish_reason="stop", usage=Usage(10, 5))

        return deltas()


async def test_lowest_latency_streams_go_where_streams_start_soonest() -> None:
    # Streams record how soon they start answering, not whole answers: the balancer
    # compares that series for streams.
    cfg = _config(
        {"slow": {}, "fast": {}},
        {
            "m": {
                "balance": "lowest_latency",
                "deployments": [{"provider": "slow"}, {"provider": "fast"}],
            }
        },
    )
    slow, fast = SlowToStartStreams("slow", {"m": [0.03] * 100}), SlowToStartStreams("fast")
    ctx = _ctx(cfg, {"slow": slow, "fast": fast}, cap=100)
    for _ in range(40):
        streaming = dataclasses.replace(ctx, deadline=time.monotonic() + 5, calls_made=0)
        await stream_single(streaming, REQUEST, _plan(streaming, "m"))
    assert len(fast.calls) > 30


async def test_limits_refusal_is_a_skip_and_fails_over() -> None:
    cfg = _config(
        {"a": {"limits": {"max_concurrency": 1, "max_queue": 0}}, "b": {}},
        {"m": {"provider": "a"}, "n": {"provider": "b"}},
    )
    a = Scripted("a", {"m": [0.1, 0.1]})
    ctx = _ctx(cfg, {"a": a, "b": Scripted("b")})
    plan = _plan(ctx, "m", "n")
    first, second = await asyncio.gather(
        execute_single(ctx, REQUEST, plan), execute_single(ctx, REQUEST, plan)
    )
    assert sorted([first.model, second.model]) == ["m", "n"]
    skipped = next(r for r in (first, second) if r.model == "n").attempts[0]
    assert (skipped.outcome, skipped.error_reason) == (AttemptOutcome.SKIPPED, "PROVIDER_SATURATED")


async def test_every_candidate_saturated_is_resource_exhausted() -> None:
    cfg = _config(
        {"a": {"limits": {"max_concurrency": 1, "max_queue": 0}}}, {"m": {"provider": "a"}}
    )
    ctx = _ctx(cfg, {"a": Scripted("a", {"m": [0.1]})})
    plan = _plan(ctx, "m")
    results = await asyncio.gather(
        execute_single(ctx, REQUEST, plan),
        execute_single(ctx, REQUEST, plan),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], UpstreamThrottled)
    assert errors[0].retry_after_s is not None


async def test_hedge_wins_when_the_first_is_slow_and_the_loser_is_cancelled() -> None:
    cfg = _config(
        {"a": {}, "b": {}},
        {"m": {"provider": "a", "hedge": {"delay_ms": 30}}, "n": {"provider": "b"}},
    )
    a = Scripted("a", {"m": [1.0]})
    ctx = _ctx(cfg, {"a": a, "b": Scripted("b")})
    t0 = time.monotonic()
    result = await execute_single(ctx, REQUEST, _plan(ctx, "m", "n"))
    assert time.monotonic() - t0 < 0.5
    assert result.model == "n"
    assert [(x.model, x.role, x.outcome) for x in result.attempts] == [
        ("n", "hedge", AttemptOutcome.SUCCEEDED),
        ("m", "primary", AttemptOutcome.CANCELLED),
    ]
    assert a.cancelled == 1 and ctx.calls_made == 2


async def test_no_hedge_when_the_first_answers_in_time_or_the_cap_is_reached() -> None:
    cfg = _config(
        {"a": {}, "b": {}},
        {"m": {"provider": "a", "hedge": {"delay_ms": 200}}, "n": {"provider": "b"}},
    )
    b = Scripted("b")
    ctx = _ctx(cfg, {"a": Scripted("a", {"m": [0.01]}), "b": b})
    result = await execute_single(ctx, REQUEST, _plan(ctx, "m", "n"))
    assert result.model == "m" and b.calls == []
    ctx = _ctx(cfg, {"a": Scripted("a", {"m": [0.3]}), "b": b}, cap=1)
    result = await execute_single(ctx, REQUEST, _plan(ctx, "m", "n"))
    assert result.model == "m" and b.calls == []


async def test_hedge_delay_follows_observed_p95() -> None:
    cfg = _config(
        {"a": {}}, {"m": {"provider": "a", "hedge": {"min_samples": 5, "min_delay_ms": 1}}}
    )
    ctx = _ctx(cfg, {"a": Scripted("a")})
    spec = ctx.catalog.models["m"]
    assert ctx.resilience.hedge_delay_s(spec) == pytest.approx(1.0)  # until observed
    for ms in (10, 20, 30, 40, 200):
        ctx.resilience.latency.record("m", ms / 1000)
    assert ctx.resilience.hedge_delay_s(spec) == pytest.approx(0.2)


def _plan(ctx: ExecutionContext, *models: str) -> ExecutionPlan:
    first, *rest = (_candidate(ctx, m) for m in models)
    stages = [PlanStage("primary", (first,))]
    if rest:
        stages.append(PlanStage("fallback", tuple(rest)))
    return ExecutionPlan(Strategy.SINGLE, tuple(stages), 0.0, 0.0, (), ctx.max_upstream_calls)


async def test_an_adapter_bug_is_a_bad_response_that_spares_the_breaker() -> None:
    # Odd input can set off a bug in an adapter: recorded (and logged), but the provider
    # did nothing wrong, so its breaker must not open for everyone.
    cfg = _config({"a": {"breaker": {"fail_max": 2}}}, {"m": {"provider": "a"}})
    a = Scripted("a", {"m": [UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogate")] * 3})
    ctx = _ctx(cfg, {"a": a})
    for _ in range(3):
        result = await call_model(ctx, REQUEST, _candidate(ctx, "m"), "primary")
        assert result.error is not None
        assert result.error.reason == "PROVIDER_BAD_RESPONSE"
        assert "UnicodeEncodeError" in result.error.message
    health = ctx.breakers.health("a")
    assert (health.state.value, health.failure_count) == ("closed", 0)


class Boastful(Scripted):
    """Answers with a usage no model could have: billions of tokens, or fewer than none."""

    def __init__(self, usage: Usage) -> None:
        super().__init__("a")
        self.usage = usage

    async def complete(self, request: ProviderRequest) -> Completion:
        self.calls.append(request.model_id)
        return Completion("ok", usage=self.usage)


@pytest.mark.parametrize("usage", [Usage(5_000_000_000, 7), Usage(10, -3)])
async def test_implausible_usage_is_a_bad_response_never_billed(usage: Usage) -> None:
    cfg = _config({"a": {}}, {"m": {"provider": "a"}})
    ctx = _ctx(cfg, {"a": Boastful(usage)})
    result = await call_model(ctx, REQUEST, _candidate(ctx, "m"), "primary")
    assert result.completion is None and result.error is not None
    assert result.error.reason == "PROVIDER_BAD_RESPONSE"
    assert "implausible usage" in result.error.message
    assert result.attempt.cost_usd == 0.0 and result.attempt.usage == Usage()


async def test_a_timed_out_call_is_charged_its_prompt() -> None:
    # The provider read the prompt (and may have written) before the time ran out; it
    # bills that, so a timeout is never recorded as free.
    cfg = _config({"a": {"timeout_s": 0.05}}, {"m": {"provider": "a"}})
    ctx = _ctx(cfg, {"a": Scripted("a", {"m": [1.0]})})
    result = await call_model(ctx, REQUEST, _candidate(ctx, "m"), "primary")
    assert result.error is not None and result.error.reason == "PROVIDER_TIMEOUT"
    assert result.attempt.usage.input_tokens > 0 and result.attempt.usage.output_tokens == 0
    assert result.attempt.cost_usd > 0


class Fencing(Scripted):
    """Answers JSON inside a Markdown code fence, as some models do in JSON mode."""

    async def complete(self, request: ProviderRequest) -> Completion:
        self.calls.append(request.model_id)
        return Completion('```json\n{"answer": 42}\n```', usage=Usage(10, 5))


async def test_json_asked_for_comes_back_without_a_code_fence() -> None:
    cfg = _config({"a": {}}, {"m": {"provider": "a"}})
    ctx = _ctx(cfg, {"a": Fencing("a")})
    json_request = dataclasses.replace(
        REQUEST,
        params=GenerationParams(response_format=ResponseFormat(ResponseFormatType.JSON_OBJECT)),
    )
    result = await call_model(ctx, json_request, _candidate(ctx, "m"), "primary")
    assert result.completion is not None and result.completion.content == '{"answer": 42}'
    text = await call_model(ctx, REQUEST, _candidate(ctx, "m"), "primary")
    assert text.completion is not None and text.completion.content.startswith("```json")


async def test_calls_side_by_side_never_pass_the_cap_nor_take_the_reserved_calls() -> None:
    # Three voters fail once each and retry after a backoff; while they wait the others
    # spend calls. With a cap of 5 and one call kept (a judge's), at most 4 go out.
    cfg = _config(
        {"a": {"retry": {"max_retries": 3, "backoff_base_s": 0.01, "budget_ratio": 1.0}}},
        {"m": {"provider": "a"}},
    )
    a = Scripted("a", {"m": [_fault(), _fault(), _fault(), _fault(), _fault(), _fault()]})
    ctx = _ctx(cfg, {"a": a}, cap=5)
    candidate = _candidate(ctx, "m")
    results = await asyncio.gather(
        *(call_model(ctx, REQUEST, candidate, "voter", reserve=1) for _ in range(3))
    )
    assert len(a.calls) == ctx.calls_made <= 4
    assert sum(len(r.attempts) for r in results) == len(a.calls)  # each call accounted once


async def test_a_caller_that_cancels_keeps_the_attempts_that_had_ended() -> None:
    # A judge or a voter cut off mid-retry: the failed calls before are in the account.
    cfg = _config(
        {"a": {"retry": {"max_retries": 2, "backoff_base_s": 0.001, "budget_ratio": 1.0}}},
        {"m": {"provider": "a"}},
    )
    ctx = _ctx(cfg, {"a": Scripted("a", {"m": [_fault(), 5.0]})})
    ended: list[Attempt] = []
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await call_model(ctx, REQUEST, _candidate(ctx, "m"), "judge", record=ended)
    assert [a.outcome for a in ended] == [AttemptOutcome.FAILED]
    assert ctx.calls_made == 2


class StreamsAtOnce(Scripted):
    """Unary calls as scripted; streams answer their first chunk at once."""

    def stream(self, request: ProviderRequest) -> AsyncIterator[StreamDelta]:
        async def deltas() -> AsyncIterator[StreamDelta]:
            yield StreamDelta(text="hi")
            yield StreamDelta(finish_reason="stop", usage=Usage(10, 5))

        return deltas()


async def test_streams_first_chunks_do_not_set_what_unary_calls_usually_take() -> None:
    # One unary answer in 0.1 s, twenty streams starting at once, then a unary call a
    # 0.2 s caller deadline cuts short: the caller's haste (unary answers take 0.1 s),
    # not evidence against the provider, whatever the streams' first chunks took.
    cfg = _config({"a": {"breaker": {"fail_max": 1}}}, {"m": {"provider": "a"}})
    a = StreamsAtOnce("a", {"m": [0.1, 1.0]})
    ctx = _ctx(cfg, {"a": a})
    assert (await call_model(ctx, REQUEST, _candidate(ctx, "m"), "primary")).completion
    for _ in range(20):
        streaming = dataclasses.replace(ctx, deadline=time.monotonic() + 5, calls_made=0)
        await stream_single(streaming, REQUEST, _plan(streaming, "m"))
    hasty = dataclasses.replace(ctx, deadline=time.monotonic() + 0.2, calls_made=0)
    result = await call_model(hasty, REQUEST, _candidate(hasty, "m"), "primary")
    assert isinstance(result.error, CallerDeadlineTimeout)
    assert ctx.breakers.health("a").state is BreakerState.CLOSED


async def test_a_provider_hung_since_start_up_opens_its_breaker_under_short_deadlines() -> None:
    # Nothing answered yet, so there is no usual latency to excuse a timeout by: a call
    # the caller allowed half a second or more counts; a very short deadline does not.
    cfg = _config({"a": {"timeout_s": 30, "breaker": {"fail_max": 2}}}, {"m": {"provider": "a"}})
    ctx = _ctx(cfg, {"a": Scripted("a", {"m": [60.0, 60.0, 60.0]})})
    hasty = dataclasses.replace(ctx, deadline=time.monotonic() + 0.1)
    result = await call_model(hasty, REQUEST, _candidate(hasty, "m"), "primary")
    assert isinstance(result.error, CallerDeadlineTimeout)
    for _ in range(2):
        patient = dataclasses.replace(ctx, deadline=time.monotonic() + 0.6, calls_made=0)
        result = await call_model(patient, REQUEST, _candidate(patient, "m"), "primary")
        assert type(result.error) is ProviderTimeout
    assert ctx.breakers.health("a").state is BreakerState.OPEN


async def test_a_queue_wait_leaves_time_to_fail_over() -> None:
    # The first model's provider has one slot, held by a slow call, and a queue that may
    # wait a second; the caller allows 0.8 s. Waiting in that queue takes at most half the
    # time left, so the second model still answers.
    cfg = _config(
        {"a": {"limits": {"max_concurrency": 1, "max_queue_wait_s": 1.0}}, "b": {}},
        {"first": {"provider": "a"}, "second": {"provider": "b"}},
    )
    ctx = _ctx(cfg, {"a": Scripted("a", {"first": [5.0]}), "b": Scripted("b")}, deadline_s=5)
    holder = asyncio.create_task(call_model(ctx, REQUEST, _candidate(ctx, "first"), "primary"))
    await asyncio.sleep(0.05)
    short = dataclasses.replace(ctx, deadline=time.monotonic() + 0.8, calls_made=0)
    started = time.monotonic()
    result = await execute_single(short, REQUEST, _plan(short, "first", "second"))
    assert result.model == "second"
    assert time.monotonic() - started < 0.6
    assert [a.outcome for a in result.attempts] == [
        AttemptOutcome.SKIPPED,
        AttemptOutcome.SUCCEEDED,
    ]
    holder.cancel()


async def test_a_slow_model_with_impatient_callers_can_keep_its_breaker_by_config() -> None:
    # A healthy model answering in 1.2 s and callers allowing 0.8 s: with no answer yet to
    # go by, the default cold rule (0.5 s) blames the provider; an operator who knows the
    # model is slow raises breaker.cold_timeout_s and the breaker stays closed.
    for cold, expected in ((0.5, BreakerState.OPEN), (2.0, BreakerState.CLOSED)):
        breaker = {"fail_max": 3, "cold_timeout_s": cold}
        cfg = _config({"a": {"timeout_s": 30, "breaker": breaker}}, {"m": {"provider": "a"}})
        ctx = _ctx(cfg, {"a": Scripted("a", {"m": [1.2] * 5})})
        for _ in range(3):
            hasty = dataclasses.replace(ctx, deadline=time.monotonic() + 0.8, calls_made=0)
            await call_model(hasty, REQUEST, _candidate(hasty, "m"), "primary")
        assert ctx.breakers.health("a").state is expected, cold


class LongStreams(Scripted):
    """Streams of many pieces, counting how many the executor has pulled."""

    def __init__(self, name: str, pieces: int) -> None:
        super().__init__(name)
        self.pieces = pieces
        self.pulled = 0

    def stream(self, request: ProviderRequest) -> AsyncIterator[StreamDelta]:
        async def deltas() -> AsyncIterator[StreamDelta]:
            for i in range(self.pieces):
                self.pulled += 1
                yield StreamDelta(text=f"{i} ")
            yield StreamDelta(finish_reason="stop", usage=Usage(10, self.pieces))

        return deltas()


async def test_a_stream_is_read_upstream_no_faster_than_the_caller_reads_it() -> None:
    # A caller that stops reading stalls the gRPC handler (flow control): the upstream
    # must stop being read too, or the whole answer piles up in memory.
    provider = LongStreams("a", pieces=5000)
    ctx = _ctx(_config({"a": {}}, {"m": {"provider": "a"}}), {"a": provider})
    sink = EventQueue(backlog=16)
    streaming = dataclasses.replace(ctx, sink=sink)
    events = forward(stream_single(streaming, REQUEST, _plan(streaming, "m")), sink)
    while not isinstance(await anext(events), Chunk):
        pass
    await asyncio.sleep(0.05)
    assert provider.pulled <= 16 + 2
    rest = [item async for item in events]
    chunks = 1 + sum(isinstance(item, Chunk) for item in rest)
    assert chunks == 5000 and provider.pulled == 5000
    result = rest[-1]
    assert isinstance(result, ExecutionResult)
    assert result.completion.content == "".join(f"{i} " for i in range(5000))
