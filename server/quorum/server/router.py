"""The request path: classify → plan → execute, and the account of what happened.

:class:`Router` owns the live parts (provider adapters, the shared HTTP session,
breakers) and is what the gRPC service (and any other front door) calls. It takes and
returns domain types only.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import replace

from pydantic import SecretStr

from quorum.server.agents import Agent, apply_agent, build_agents
from quorum.server.catalog import Catalog, ModelSpec, breaker_keys, build_catalog
from quorum.server.classify import Classifier
from quorum.server.classify.build import build_classifier, build_verifiers
from quorum.server.classify.chain import ChainClassifier
from quorum.server.classify.rules import TASKS
from quorum.server.config import Config
from quorum.server.decisions import DecisionLog, FailedDecision, Feedback, feedback_is_good
from quorum.server.domain import (
    Attempt,
    AttemptOutcome,
    Candidate,
    Classification,
    Completion,
    ExecutionPlan,
    ExecutionResult,
    GenerationParams,
    Message,
    ResponseFormat,
    ResponseFormatType,
    RouteRequest,
    RouteResult,
    Sensitivity,
    StageTimings,
    Strategy,
    Usage,
)
from quorum.server.errors import (
    CallerDeadlineTimeout,
    ExecutionFailed,
    NoCandidate,
    ProviderError,
    ProviderTimeout,
)
from quorum.server.execute.calls import (
    ExecutionContext,
    call_model,
    hasty,
    skip_kind,
    spent_before_failing,
)
from quorum.server.execute.cascade import CascadeRuntime, execute_cascade
from quorum.server.execute.consensus import ConsensusRuntime, execute_judge, execute_majority
from quorum.server.execute.events import NULL_SINK, Chunk, Event, EventSink, PlanMade
from quorum.server.execute.gate import Verifier
from quorum.server.execute.single import execute_single
from quorum.server.execute.stream import EventQueue, answer_chunks, forward, stream_single
from quorum.server.execute.voters import REPLY_MARGIN_S
from quorum.server.guardrails import Guardrails
from quorum.server.observability.metrics import Metrics
from quorum.server.observability.tracing import Tracing
from quorum.server.observed import ObservedState, build_observed
from quorum.server.performance import ranked_models
from quorum.server.plan import cascade_route, estimate_tokens, plan
from quorum.server.plan_stages import request_agent
from quorum.server.policy import RoutingPolicy, build_policy
from quorum.server.providers.base import Provider, ProviderRequest
from quorum.server.providers.http import HttpClient
from quorum.server.providers.registry import build_providers
from quorum.server.resilience.breakers import Breakers, ProviderHealth
from quorum.server.resilience.runtime import build_resilience
from quorum.server.resilience.shared_state import build_shared_state
from quorum.server.service.auth import current_tenant
from quorum.server.shadow import ShadowEvaluator, ShadowSettings
from quorum.server.state import StateSnapshot, accuracy_key
from quorum.server.tenants import authenticates
from quorum.server.tokens import prompt_tokens
from quorum.server.values import value_type


@value_type
class _ClassifierCalls:
    """The LLM classifier's model calls for the request being routed: they cost money,
    so they are attempts in its account (role ``classifier``)."""

    started: float  # when the request started (time.monotonic())
    attempts: list[Attempt]


_CLASSIFIER_CALLS: contextvars.ContextVar[_ClassifierCalls | None] = contextvars.ContextVar(
    "quorum_classifier_calls", default=None
)


@value_type
class PlanOutcome:
    """What the Plan RPC returns: the decision without running it."""

    classification: Classification
    plan: ExecutionPlan
    providers: Mapping[str, ProviderHealth]
    baseline_model: str
    baseline_estimated_cost_usd: float


class Router:
    """Classify, plan and execute requests against the configured providers."""

    def __init__(
        self,
        config: Config,
        *,
        secrets: Mapping[str, SecretStr] | None = None,
        providers: Mapping[str, Provider] | None = None,
        classifier: Classifier | None = None,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.config = config
        self.catalog: Catalog = build_catalog(config)
        self.policy: RoutingPolicy = build_policy(config)
        self.http = HttpClient()
        self.providers: dict[str, Provider] = dict(
            providers
            if providers is not None
            else build_providers(config, self.catalog, secrets or {}, self.http)
        )
        # ---- resilience: shared breaker state, limits, retries, balancing ----
        self.shared_state = build_shared_state(config.state)
        self.breakers = Breakers(
            {n: p.breaker for n, p in config.providers.items()},
            deployments=breaker_keys(self.catalog),
            shared=self.shared_state,
        )
        self.resilience = build_resilience(config)
        self.provider_timeouts = {n: p.timeout_s for n, p in config.providers.items()}
        self.agents: dict[str, Agent] = build_agents(config, self.catalog)
        self.verifiers: tuple[Verifier, ...] = build_verifiers(config)
        self.classifier: Classifier = classifier or build_classifier(
            config,
            self.agents,
            self._classify_with_model,
            self._classifier_may_see,
            http=self.http,
            secrets=secrets,
        )
        # Plan calls no model: its classification leaves the LLM out.
        self.plan_classifier: Classifier = (
            self.classifier.without_llm()
            if isinstance(self.classifier, ChainClassifier)
            else self.classifier
        )
        d = config.decisions
        self.decisions = DecisionLog(
            sink=d.sink,
            path=d.path,
            include_prompts=d.include_prompts,
            retention_s=d.retention_s,
            max_entries=d.max_entries,
            redis_url=config.state.redis_url,
            stream_key=f"{config.state.namespace}:decisions",
            flush_interval_s=d.flush_interval_s,
            per_tenant=authenticates(config),
        )
        self.observed: ObservedState = build_observed(config)
        # The models performance routing may reorder (a tier with others to choose from):
        # only their latency and cost are worth recording and reading per request.
        self._ranked: frozenset[str] = (
            ranked_models(self.catalog) if self.policy.performance.enabled else frozenset()
        )
        self._tasks = frozenset(TASKS) | frozenset(config.classifier.embedding.tasks)
        self.shadow = ShadowEvaluator(
            ShadowSettings(
                config.shadow.sample_rate, config.shadow.daily_budget_usd, config.shadow.timeout_s
            ),
            self.catalog,
            self._shadow_call,
            self.decisions,
            gate=self.policy.cascade.gate,
        )
        # ---- tenants, budgets, cache, metrics, tracing: quorum.server.guardrails ----
        self.metrics = metrics or Metrics()
        traced = config.observability.tracing
        self.tracing = tracing or (Tracing.create(traced) if traced is not None else None)
        self.guardrails = Guardrails(config, self.catalog, self.metrics, self.tracing)
        # Read at scrape time: a breaker past its reset timeout shows half-open at once.
        self.metrics.track_breakers(self.breakers.states)

    async def close(self) -> None:
        await self.guardrails.close()
        if self.tracing is not None:
            self.tracing.shutdown()
        await self.shadow.close()
        await self.observed.close()
        await self.decisions.close()
        for provider in self.providers.values():
            await provider.close()
        await self.http.close()
        if self.shared_state is not None:
            await self.shared_state.close()

    def snapshot(self) -> StateSnapshot:
        self.observed.start()  # shared windows refresh in the background once a loop runs
        return StateSnapshot(
            providers=self.breakers.snapshot(),
            escalation_rates=dict(self.observed.escalations.rates()),
            model_accuracy=dict(self.observed.accuracy.rates()),
            model_quality=dict(self.observed.quality.rates()),
            model_latency_ms=dict(self.observed.latency.rates()) if self._ranked else {},
            model_cost_usd=dict(self.observed.cost.rates()) if self._ranked else {},
        )

    def models(self, tier: str = "") -> list[ModelSpec]:
        """The models the calling tenant may use, cheapest tier first."""
        catalog = self.guardrails.caller().catalog
        return [m for m in catalog.ordered() if not tier or m.tier == tier]

    async def explain(self, request: RouteRequest) -> PlanOutcome:
        """Classify and plan ``request`` without calling a model."""
        scope = await self.guardrails.begin(request, explain=True)
        classification = await self.plan_classifier.classify(scope.request)
        classification = self.guardrails.agent_allowed(scope, classification)
        request, catalog = self._for_agent(scope.request, classification)
        catalog = self.guardrails.narrow(scope, catalog)
        snapshot = self.guardrails.with_budget(scope, self.snapshot())
        request, decided = self.guardrails.decide(
            scope, request, lambda r: plan(r, classification, catalog, self.policy, snapshot)
        )
        tokens = estimate_tokens(request, classification)
        baseline = self.catalog.baseline
        return PlanOutcome(
            classification=classification,
            plan=decided,
            providers=snapshot.providers,
            baseline_model=baseline.name,
            baseline_estimated_cost_usd=baseline.estimate_cost(
                tokens.input_tokens, tokens.output_tokens
            ),
        )

    async def route(
        self,
        request: RouteRequest,
        *,
        timeout_s: float | None = None,
        sink: EventSink = NULL_SINK,
        restart_streams: bool = True,
    ) -> RouteResult:
        """Route ``request``; ``timeout_s`` is the time left before the caller's deadline.

        Events (the plan, attempts, chunks, gate verdicts, ...) go to ``sink`` as they
        happen; with a sink, the single strategy streams from the provider, and a stream
        broken mid-way restarts on the next model only with ``restart_streams``.
        """
        t0 = time.monotonic()
        limit = self.config.server.default_deadline_s
        if timeout_s is None:
            deadline = t0 + limit
        else:
            # Done a little before the caller's deadline: the answer, or the error with
            # every attempt, must reach the caller before its own timer fires.
            margin = min(REPLY_MARGIN_S, timeout_s * 0.1)
            deadline = t0 + max(0.0, min(timeout_s - margin, limit))
        # Tenant, permissions, cache (not for streams), budget guard.
        scope = await self.guardrails.begin(request, streaming=sink is not NULL_SINK)
        if scope.hit is not None:
            # A decision too (served from the cache): logged, and open to Feedback under
            # the request id the caller got back.
            self.decisions.record(scope.request, scope.hit)
            return scope.hit
        calls = _ClassifierCalls(t0, [])
        token = _CLASSIFIER_CALLS.set(calls)
        try:
            classification = await self.classifier.classify(scope.request)
        finally:
            _CLASSIFIER_CALLS.reset(token)
        classifying = tuple(calls.attempts)
        try:
            classification = self.guardrails.agent_allowed(scope, classification)
            request, catalog = self._for_agent(scope.request, classification)
            catalog = self.guardrails.narrow(scope, catalog)
            t1 = time.monotonic()
            snapshot = self.guardrails.with_budget(scope, self.snapshot())
            request, decided = self.guardrails.decide(
                scope, request, lambda r: plan(r, classification, catalog, self.policy, snapshot)
            )
        except Exception:
            # Refused after the classifier's model was paid: that call still counts.
            await self.guardrails.charge(scope, classifying)
            raise
        t2 = time.monotonic()
        sink.emit(PlanMade(decided))
        ctx = ExecutionContext(
            providers=self.providers,
            catalog=self.catalog,
            breakers=self.breakers,
            provider_timeouts=self.provider_timeouts,
            deadline=deadline,
            max_upstream_calls=decided.max_upstream_calls,
            sink=sink,
            resilience=self.resilience,
            restart_streams=restart_streams,
        )
        # The classifier's calls came before execution: their start times are negative.
        shift_ms = (ctx.started - t0) * 1000.0
        classifying = tuple(replace(a, started_ms=a.started_ms - shift_ms) for a in classifying)
        try:
            async with self.guardrails.execution(scope, decided, deadline, classifying) as run:
                result = run.done(await self._run(ctx, request, decided, classification))
        except ExecutionFailed as exc:  # no answer: a decision all the same
            failed = FailedDecision(
                request_id=request.request_id,
                classification=classification,
                plan=decided,
                attempts=exc.attempts,
                code=exc.code.name,
                reason=exc.reason,
                total_ms=(time.monotonic() - t0) * 1000.0,
                guards=tuple(scope.guards),
            )
            self.decisions.record_failure(request, failed)
            raise
        t3 = time.monotonic()
        attempts = (*classifying, *result.attempts)
        usage = sum((a.usage for a in attempts), Usage())
        answer_usage = result.completion.usage
        judge = result.consensus.judge if result.consensus is not None else None
        if judge is not None and judge.synthesized:
            # The judge's prompt held every candidate answer: the premium model answering
            # the request itself would have read only the request.
            answer_usage = Usage(prompt_tokens(request.messages), answer_usage.output_tokens)
        routed = RouteResult(
            request_id=request.request_id,
            completion=result.completion,
            model=result.model,
            provider=result.provider,
            strategy=decided.strategy,
            classification=classification,
            plan=decided,
            attempts=attempts,
            usage=usage,
            cost_usd=sum(a.cost_usd for a in attempts),
            baseline_cost_usd=self.catalog.baseline.cost(answer_usage),
            baseline_model=self.catalog.baseline.name,
            timings=StageTimings(
                classify_ms=(t1 - t0) * 1000.0,
                plan_ms=(t2 - t1) * 1000.0,
                execute_ms=(t3 - t2) * 1000.0,
                total_ms=(time.monotonic() - t0) * 1000.0,
            ),
            cascade=result.cascade,
            consensus=result.consensus,
            guards=tuple(scope.guards),
            simulated=result.simulated,
        )
        self.decisions.record(request, routed)
        self._observe_quality(routed)
        self.shadow.consider(request, routed, catalog)
        await self.guardrails.finish(scope, routed)
        return routed

    # ---- streaming --------------------------------------------------------------------

    async def route_stream(
        self,
        request: RouteRequest,
        *,
        timeout_s: float | None = None,
        restart_streams: bool = True,
        on_settled: Callable[[], None] | None = None,
    ) -> AsyncGenerator[Event | RouteResult, None]:
        """Route ``request`` as a stream of events, the plan first and the full account
        (a :class:`RouteResult`) last.

        Errors before the plan (invalid or infeasible requests) are raised before any
        event; later ones after the events that preceded them. An answer that was not
        streamed live (cascade, consensus, a cached answer) is sent as chunks just
        before the account. Closing the iterator cancels the work and its upstream calls.
        Without ``restart_streams`` a stream broken mid-way ends with its error instead
        of restarting on the next model (which would call, and pay for, that model).
        ``on_settled`` is called as soon as the work is over (answered or failed), even
        while events still wait for the caller to read them: what is left is only the
        caller's reading.
        """
        events = EventQueue()
        planned = streamed = False
        work = self.route(
            request, timeout_s=timeout_s, sink=events, restart_streams=restart_streams
        )
        events_of = forward(work, events, on_settled)
        async with contextlib.aclosing(events_of):  # closing this closes the work too
            async for item in events_of:
                if isinstance(item, PlanMade):
                    planned = True
                elif isinstance(item, Chunk):
                    streamed = True
                if not isinstance(item, RouteResult):
                    yield item
                    continue
                if not planned:
                    yield PlanMade(item.plan)
                if not streamed:
                    for chunk in answer_chunks(item.model, item.completion):
                        yield chunk
                yield item

    def _run(
        self,
        ctx: ExecutionContext,
        request: RouteRequest,
        decided: ExecutionPlan,
        classification: Classification,
    ) -> Awaitable[ExecutionResult]:
        """The strategy's executor; a single model streams when there is a sink."""
        if ctx.sink is not NULL_SINK and decided.strategy is Strategy.SINGLE:
            return stream_single(ctx, request, decided)
        return self._execute(ctx, request, decided, classification)

    def _observe_quality(self, result: RouteResult) -> None:
        """Feed gate verdicts, and each answer's latency and cost, into the per-model,
        per-task figures the planner orders by."""
        task = result.classification.task
        if task not in self._tasks:  # a caller's own task name adds no key
            return
        for attempt in result.attempts:
            if attempt.gate is not None:
                self.observed.quality.record(accuracy_key(attempt.model, task), attempt.gate.passed)
        if self._ranked:
            self.observed.observe_answers(task, result.attempts, self._ranked)

    async def feedback(self, feedback: Feedback) -> None:
        """Record feedback on an earlier request; good or bad answers teach the planner.

        With authentication on, only the tenant that made the request may judge it (any
        other is told it is unknown); only the first verdict on a request teaches, so
        repeating one cannot steer routing."""
        tenants = self.guardrails.tenants
        caller = tenants.for_request(current_tenant(), "") if tenants.auth_required else None
        decided = await self.decisions.feedback(
            feedback, tenant=caller.name if caller is not None else None
        )
        good = feedback_is_good(feedback)
        known = decided.task in self._tasks  # a caller's own task name adds no key
        if good is not None and decided.model and decided.first_verdict and known:
            self.observed.quality.record(accuracy_key(decided.model, decided.task), good)

    def _for_agent(
        self, request: RouteRequest, classification: Classification
    ) -> tuple[RouteRequest, Catalog]:
        """The agent's view: its tools enforced, its prompt added, its models only."""
        agent = self.agents.get(classification.agent) if classification.agent else None
        if agent is None:
            return request, self.catalog
        request = apply_agent(agent, request)
        forced = request.hints.model
        if forced and forced not in agent.catalog.models:
            if request.hints.agent == agent.name:
                # Both named by the caller, and they disagree.
                models = ", ".join(f"{m.name} ({m.tier})" for m in agent.catalog.ordered())
                raise NoCandidate(
                    f"hints.model: {forced} is not among the models of agent {agent.name} "
                    f"({models}); drop hints.model or hints.agent",
                    metadata={"model": forced, "agent": agent.name},
                )
            # The classifier chose the agent, the caller chose the model: the model
            # wins (the agent's tools and prompt still apply).
            return request, self.catalog
        return request, agent.catalog

    async def _shadow_call(
        self, request: RouteRequest, candidate: Candidate, timeout_s: float
    ) -> tuple[Completion | None, float]:
        """One shadow call on its own deadline and call budget."""
        ctx = ExecutionContext(
            providers=self.providers,
            catalog=self.catalog,
            breakers=self.breakers,
            provider_timeouts=self.provider_timeouts,
            deadline=time.monotonic() + timeout_s,
            max_upstream_calls=1,
            resilience=self.resilience,
        )
        called = await call_model(ctx, request, candidate, "shadow")
        return called.completion, called.attempt.cost_usd

    def _classifier_may_see(self, model: str, request: RouteRequest) -> bool:
        """Whether the LLM classifier's model may read ``request``: cleared for its
        sensitivity and among the models its tenant may use."""
        spec = self.catalog.models[model]
        if spec.max_sensitivity < (request.hints.sensitivity or Sensitivity.PUBLIC):
            return False
        tenant = self.guardrails.tenants.for_request(current_tenant(), request.tenant)
        return model in tenant.catalog_for(request.hints.use_case).models

    async def _classify_with_model(
        self, model: str, messages: tuple[Message, ...], timeout_s: float
    ) -> str:
        """One call for the LLM classifier, under the model's provider breaker."""
        spec = self.catalog.models[model]
        params = GenerationParams(
            max_tokens=60,
            temperature=0.0,
            response_format=ResponseFormat(ResponseFormatType.JSON_OBJECT),
        )
        calls = _CLASSIFIER_CALLS.get()
        sent = time.monotonic()
        try:
            with self.breakers.guard(spec.provider):
                try:
                    completion = await self.providers[spec.provider].complete(
                        ProviderRequest(spec.model_id, messages, params, timeout_s)
                    )
                except ProviderTimeout as exc:
                    # The classifier's own tight limit, not the provider's: it counts only
                    # as a caller's deadline would (see calls.timed_out).
                    key = f"{spec.provider}/{spec.model_id}"
                    if not hasty(self.resilience, spec.provider, key, timeout_s):
                        raise
                    raise CallerDeadlineTimeout(
                        f"{exc.message} (the classifier's time limit)", provider=spec.provider
                    ) from exc
        except (ProviderError, asyncio.CancelledError) as exc:
            if calls is not None:
                calls.attempts.append(_classifier_attempt(spec, messages, calls, sent, exc))
            raise
        if calls is not None:
            calls.attempts.append(_classifier_attempt(spec, messages, calls, sent, completion))
        return completion.content

    async def _execute(
        self,
        ctx: ExecutionContext,
        request: RouteRequest,
        decided: ExecutionPlan,
        classification: Classification,
    ) -> ExecutionResult:
        strategy = decided.strategy
        if strategy is Strategy.SINGLE:
            return await execute_single(ctx, request, decided)
        if strategy is Strategy.CASCADE:
            route = cascade_route(request, classification, self.catalog, self.policy)
            cascade = CascadeRuntime(
                verifiers=self.verifiers,
                gate=self.policy.cascade.gate,
                escalations=self.observed.escalations,
                agent=request_agent(request, classification),
                route_rate=self.observed.escalations.rates().get(route, 0.0),
            )
            return await execute_cascade(ctx, request, decided, cascade)
        if strategy in (Strategy.CONSENSUS_MAJORITY, Strategy.CONSENSUS_JUDGE):
            consensus = ConsensusRuntime(
                policy=self.policy.consensus,
                gate=self.policy.cascade.gate,
                accuracy=self.observed.accuracy,
                task=classification.task,
            )
            if strategy is Strategy.CONSENSUS_JUDGE:
                return await execute_judge(ctx, request, decided, consensus)
            return await execute_majority(ctx, request, decided, consensus)
        raise AssertionError(f"planner produced an unexecutable strategy {strategy}")


def _classifier_attempt(
    spec: ModelSpec,
    messages: tuple[Message, ...],
    calls: _ClassifierCalls,
    sent: float,
    outcome: Completion | ProviderError | asyncio.CancelledError,
) -> Attempt:
    """The LLM classifier's call as an attempt: what it cost, also when it failed or was
    cut off by the classifier's time limit (the provider read the prompt; it may bill it)."""
    done = Attempt(
        model=spec.name,
        provider=spec.provider,
        tier=spec.tier,
        role="classifier",
        outcome=AttemptOutcome.SUCCEEDED,
        reason="ok",
        latency_ms=(time.monotonic() - sent) * 1000.0,
        started_ms=(sent - calls.started) * 1000.0,
    )
    if isinstance(outcome, Completion):
        return replace(done, usage=outcome.usage, cost_usd=spec.cost(outcome.usage))
    if isinstance(outcome, ProviderError) and skip_kind(outcome):
        # Refused before it went upstream (breaker open, a limit): nothing was sent.
        return replace(
            done,
            outcome=AttemptOutcome.SKIPPED,
            reason=outcome.message,
            error_reason=outcome.reason,
        )
    if isinstance(outcome, ProviderError):
        spent = spent_before_failing(RouteRequest("", messages), outcome) or Usage()
        return replace(
            done,
            outcome=AttemptOutcome.FAILED,
            reason=outcome.message,
            error_reason=outcome.reason,
            usage=spent,
            cost_usd=spec.cost(spent),
        )
    spent = Usage(prompt_tokens(messages), 0)
    return replace(
        done,
        outcome=AttemptOutcome.CANCELLED,
        reason="cut off: the classifier's time limit",
        usage=spent,
        cost_usd=spec.cost(spent),
    )
