"""Everything the router does around classify → plan → execute for a tenant.

The router calls, in order::

    scope = await guardrails.begin(request)       # tenant, permissions, defaults,
    if scope.hit: return scope.hit                # cache lookup, budget guard
    catalog = guardrails.narrow(scope, catalog)   # an agent's models, for this tenant
    request, decided = guardrails.decide(scope, request, plan_fn)  # planner + rules
    async with guardrails.execution(scope, decided, deadline) as run:
        run.done(await execute(...))              # reserve before, settle after
    guardrails.finish(scope, result)              # metrics, cache store

* **Tenant**: from the authenticated identity (or ``RouteRequest.tenant`` with auth
  off); hints naming something the tenant may not use → PERMISSION_DENIED; its default
  sensitivity is applied; the planner gets the tenant's filtered catalog.
* **Cache**: looked up before the budget guard — a hit costs nothing, so it is served
  even when the budget is spent.
* **Budget guard**: :func:`~quorum.server.budget.guard.budget_guard` on the current
  readings; its notes go to ``RouteResult.guards`` and the plan's reasons.
* **Strategy rules**: when the planner picks a strategy the tenant's plan (or the budget
  guard) forbids, it plans again with single.
* **Reserve/settle**: the plan's estimated maximum cost is reserved before any call
  and settled to the actual cost after, also on failure; on cancellation the whole
  reservation is kept as spent (calls in flight may still be billed). The answer waits
  for its settle at most :data:`SETTLE_WAIT_S` and never past the caller's deadline: a
  store that does not answer keeps the settle owed and retried, not the answer.
* **Restricted data** never leaves the models cleared for it; when they all fail the
  caller is told so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType

import redis.asyncio as aioredis
import structlog

from quorum.server.budget.guard import CONSENSUS, budget_guard
from quorum.server.budget.ledger import (
    GLOBAL,
    Budgets,
    Counter,
    MemoryBudgetStore,
    Reservation,
)
from quorum.server.budget.redis_store import RedisBudgetStore
from quorum.server.cache import MemoryAnswerStore, RedisAnswerStore, ResponseCache, hit_result
from quorum.server.catalog import Catalog
from quorum.server.config import Config
from quorum.server.domain import (
    Attempt,
    Classification,
    ExecutionPlan,
    ExecutionResult,
    Reason,
    RouteRequest,
    RouteResult,
    Sensitivity,
    Strategy,
)
from quorum.server.errors import (
    AllAttemptsFailed,
    ExecutionFailed,
    QuorumError,
    ResourceExhausted,
)
from quorum.server.observability.metrics import Metrics, current_record
from quorum.server.observability.tracing import Tracing
from quorum.server.service.auth import current_tenant
from quorum.server.state import StateSnapshot
from quorum.server.tenants import (
    TenantPolicy,
    Tenants,
    cheapest_tier,
    check_request,
    filter_catalog,
    with_tenant_defaults,
)

log = structlog.get_logger("quorum.guardrails")

SETTLE_MARGIN_S = 30.0
SETTLE_WAIT_S = 1.0  # the longest an answer waits for its settle (the store's retries go on)
SETTLE_FLOOR_S = 0.02  # what it may wait past its deadline (within the reply margin)
# At shutdown, for settles still trying: within the drain's share of the pod's
# termination grace (base: 5 s preStop + 20 s grace of 30 s), so the final try of what is
# owed still runs. A settle still failing after it is logged as dropped.
SETTLE_CLOSE_WAIT_S = 3.0


def budgets_configured(config: Config) -> bool:
    """Whether any spend limit is set (for all tenants or for one)."""
    return Budgets.limited(config.budgets.all_tenants) or any(
        Budgets.limited(t.budget) for t in config.tenants.values()
    )


@dataclass(slots=True)
class Scope:
    """One request as its tenant may run it."""

    tenant: TenantPolicy
    request: RouteRequest
    catalog: Catalog
    started: float
    guards: list[str] = field(default_factory=list)
    forbid_consensus: bool = False
    cache_key: str | None = None
    counters: Sequence[Counter] = ()
    budget_share: float = 0.0
    hit: RouteResult | None = None


@dataclass(slots=True)
class Run:
    """The execution of one plan, as the reservation needs to settle it."""

    attempts: tuple[Attempt, ...] = ()
    finished: bool = False

    def done(self, result: ExecutionResult) -> ExecutionResult:
        self.attempts = result.attempts
        self.finished = True
        return result


class Execution:
    """``async with guardrails.execution(...) as run``: the reservation before the plan
    runs, and after it the metrics, the trace and the settlement, also on failure; on
    cancellation the whole reservation is kept as spent (calls in flight may still be
    billed). A class rather than a generator-based context manager: it is on every
    request's path."""

    __slots__ = (
        "_before",
        "_deadline",
        "_decided",
        "_guardrails",
        "_reservation",
        "_run",
        "_scope",
        "_t0",
    )

    def __init__(
        self,
        guardrails: Guardrails,
        scope: Scope,
        decided: ExecutionPlan,
        deadline: float,
        before: tuple[Attempt, ...] = (),
    ) -> None:
        self._guardrails = guardrails
        self._scope = scope
        self._decided = decided
        self._deadline = deadline
        self._before = before
        self._reservation: Reservation | None = None
        self._run = Run()
        self._t0 = 0

    async def __aenter__(self) -> Run:
        g, scope = self._guardrails, self._scope
        if g.budgets is not None and scope.counters:
            try:
                self._reservation = await g.budgets.reserve(
                    scope.tenant.name,
                    scope.request.request_id,
                    scope.counters,
                    self._decided.estimated_cost_max_usd + sum(a.cost_usd for a in self._before),
                    critical=scope.request.hints.critical,
                    hold_s=max(0.0, self._deadline - time.monotonic()) + SETTLE_MARGIN_S,
                )
            except QuorumError:
                await g.charge(scope, self._before)  # refused, but already paid for
                raise
        self._t0 = time.time_ns()
        return self._run

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        g, run = self._guardrails, self._run
        if isinstance(exc, ExecutionFailed):
            if self._before:  # the error's account starts with the calls made before
                exc.attempts = (*self._before, *exc.attempts)
            run.attempts = exc.attempts
        elif self._before:
            run.attempts = (*self._before, *run.attempts)
        try:
            if (
                isinstance(exc, AllAttemptsFailed)
                and self._scope.request.hints.sensitivity is Sensitivity.RESTRICTED
            ):
                raise AllAttemptsFailed(
                    f"{exc.message}; the request is marked restricted, so it was sent only "
                    "to models cleared for restricted data and never falls back to others",
                    attempts=exc.attempts,
                    plan=exc.plan,
                ) from exc
        finally:
            g.metrics.attempts(self._scope.tenant.name, run.attempts)
            if g.tracing is not None:
                g.tracing.attempts(run.attempts, self._t0)
            reservation = self._reservation
            if reservation is not None and g.budgets is not None:
                failed = isinstance(exc, asyncio.CancelledError | Exception)
                cancelled = failed and not isinstance(exc, ExecutionFailed) and not run.finished
                actual = (
                    reservation.amount / 1e6 if cancelled else sum(a.cost_usd for a in run.attempts)
                )
                await g.settle(reservation, actual, self._deadline)


class Guardrails:
    """Tenants, cache, budgets, metrics and tracing around the request path."""

    def __init__(
        self,
        config: Config,
        catalog: Catalog,
        metrics: Metrics,
        tracing: Tracing | None = None,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.metrics = metrics
        self.tracing = tracing
        self.tenants = Tenants(config, catalog)
        url = config.state.redis_url
        limited = budgets_configured(config)
        self.redis: aioredis.Redis | None = None
        if url and (limited or config.cache.enabled):
            self.redis = aioredis.Redis.from_url(
                url, socket_timeout=1.0, socket_connect_timeout=1.0
            )
        self.budgets: Budgets | None = None
        self._settling: set[asyncio.Future[None]] = set()  # settles still running
        if limited:
            # One hash tag for every budget key of the deployment (Redis Cluster).
            prefix = f"{{{config.state.namespace}:budget}}"
            store = (
                RedisBudgetStore(self.redis, key_prefix=prefix)
                if self.redis
                else MemoryBudgetStore()
            )
            self.budgets = Budgets(
                config.budgets,
                store,
                key_prefix=prefix,
                retry_after_s=config.admission.retry_after_s,
            )
        self.cache: ResponseCache | None = None
        if config.cache.enabled:
            answers = (
                RedisAnswerStore(self.redis)
                if self.redis
                else MemoryAnswerStore(config.cache.max_entries, config.cache.max_memory_bytes)
            )
            self.cache = ResponseCache(
                config.cache, answers, key_prefix=f"{config.state.namespace}:cache"
            )

    async def settle(self, reservation: Reservation, actual_usd: float, deadline: float) -> None:
        """Settle ``reservation`` to ``actual_usd``, waiting for the store until
        ``deadline`` at most (and :data:`SETTLE_WAIT_S`): an answer that is ready never
        waits out an unreachable store's retries (they go on, and are owed if they fail),
        nor its caller's deadline. A caller that cancels leaves the settle running."""
        assert self.budgets is not None
        settling = asyncio.ensure_future(self.budgets.settle(reservation, actual_usd))
        self._settling.add(settling)
        settling.add_done_callback(self._settled)
        # At least a moment even past the deadline: a reachable store settles within it,
        # so what is read back after a refusal or a timeout already counts it.
        wait_s = min(SETTLE_WAIT_S, max(SETTLE_FLOOR_S, deadline - time.monotonic()))
        try:
            async with asyncio.timeout(wait_s):
                await asyncio.shield(settling)
        except TimeoutError:
            log.warning("budget_settle_pending", reservation=reservation.rid, waited_s=wait_s)

    def _settled(self, settling: asyncio.Future[None]) -> None:
        """A settle task ended: forget it, and say so if it failed for a reason the
        ledger does not handle (its answer may have stopped waiting for it)."""
        self._settling.discard(settling)
        if not settling.cancelled() and (exc := settling.exception()) is not None:
            log.error("budget_settle_error", error=f"{type(exc).__name__}: {exc}")

    async def close(self) -> None:
        """Let settles in progress finish (briefly: see :data:`SETTLE_CLOSE_WAIT_S`),
        settle what is owed, close Redis."""
        if self._settling:
            await asyncio.wait(set(self._settling), timeout=SETTLE_CLOSE_WAIT_S)
        if self.budgets is not None:
            await self.budgets.close()
        if self.redis is not None:
            await self.redis.aclose()

    def caller(self, requested: str = "") -> TenantPolicy:
        """The tenant of the current request."""
        return self.tenants.for_request(current_tenant(), requested)

    # ---- before planning --------------------------------------------------------------

    async def begin(
        self, request: RouteRequest, *, explain: bool = False, streaming: bool = False
    ) -> Scope:
        """Resolve the tenant, check permissions, apply defaults, look up the cache and
        apply the budget guard. ``explain`` (the Plan RPC) skips the cache and turns a
        budget refusal into a note; a stream skips the cache unless
        ``cache.cache_streams`` is set."""
        started = time.monotonic()
        tenant = self.caller(request.tenant)
        record = current_record()
        if record is not None:
            record.tenant = tenant.name
        check_request(tenant, request)
        request = with_tenant_defaults(tenant, request)
        catalog = tenant.catalog_for(request.hints.use_case)
        scope = Scope(tenant, request, catalog, started)
        cache_ok = not explain and (not streaming or self.config.cache.cache_streams)
        if self.cache is not None and cache_ok:
            scope.cache_key = self.cache.key(tenant.name, request)
            if scope.cache_key is not None:
                answer = await self.cache.get(scope.cache_key)
                if answer is not None:
                    elapsed = (time.monotonic() - started) * 1000.0
                    scope.hit = hit_result(request, answer, self.catalog.baseline, elapsed)
                    self.metrics.cache_hit(tenant.name, scope.hit)
                    if record is not None:
                        record.strategy, record.model = answer.strategy.value, answer.model
                    return scope
        if self.budgets is not None:
            await self._guard(scope, explain)
        return scope

    async def _guard(self, scope: Scope, explain: bool) -> None:
        assert self.budgets is not None
        scope.counters = self.budgets.counters(scope.tenant.name, scope.tenant.budget)
        try:
            readings = await self.budgets.read(scope.counters)
        except ResourceExhausted as exc:  # the store is down and store_failure is deny
            if not explain:
                raise
            scope.guards.append(f"budget: Route would be refused now: {exc.message}")
            return
        scope.budget_share = max((r.ratio for r in readings), default=0.0)
        for r in readings:
            c = r.counter
            label = GLOBAL if c.scope == GLOBAL else c.scope
            self.metrics.budget(label, c.period.value, r.ratio, c.limit / 1e6)
        try:
            outcome = budget_guard(
                scope.request.hints,
                readings,
                cheapest_tier=cheapest_tier(scope.catalog),
                retry_after_s=self.config.admission.retry_after_s,
            )
        except ResourceExhausted as exc:
            if not explain:
                raise
            scope.guards.append(f"budget: Route would be refused now: {exc.message}")
            return
        scope.guards.extend(outcome.notes)
        scope.forbid_consensus = outcome.forbid_consensus
        if outcome.hints is not scope.request.hints:
            scope.request = dataclasses.replace(scope.request, hints=outcome.hints)

    # ---- planning ---------------------------------------------------------------------

    @staticmethod
    def with_budget(scope: Scope, snapshot: StateSnapshot) -> StateSnapshot:
        """The planner's snapshot with the share of the tightest budget already used."""
        if not scope.budget_share:
            return snapshot
        return dataclasses.replace(snapshot, budget_used_share=scope.budget_share)

    def agent_allowed(self, scope: Scope, classification: Classification) -> Classification:
        """The classification, without an agent the classifier chose that the tenant
        may not use (asking for one by hint is refused earlier): routed as no agent,
        and its name not shown."""
        allowed = scope.tenant.agents
        agent = classification.agent
        if agent and allowed is not None and agent not in allowed:
            named = f"agent:{agent}:"
            kept = tuple(s for s in classification.signals if not s.startswith(named))
            return replace(
                classification, agent="", signals=(*kept, "agent:not_allowed_for_tenant")
            )
        return classification

    def narrow(self, scope: Scope, catalog: Catalog) -> Catalog:
        """``catalog`` (the whole one, or an agent's) limited to what the tenant may use."""
        if catalog is self.catalog:
            return scope.catalog
        return filter_catalog(catalog, scope.catalog.models)

    def decide(
        self,
        scope: Scope,
        request: RouteRequest,
        plan_fn: Callable[[RouteRequest], ExecutionPlan],
    ) -> tuple[RouteRequest, ExecutionPlan]:
        """Plan with the pure planner; plan again with single when the chosen strategy
        is one the tenant's plan or the budget guard forbids. Returns the request as
        planned (its hints may have changed) and the plan, with the guards' notes."""
        decided = plan_fn(request)
        use_case = request.hints.use_case
        why = ""
        if not scope.tenant.allows_strategy(decided.strategy, use_case):
            why = f"plan {scope.tenant.plan or 'default'} does not allow"
        elif scope.forbid_consensus and decided.strategy in CONSENSUS:
            why = "budget guard forbids"
        if why:
            fallback = Strategy.SINGLE
            hints = dataclasses.replace(request.hints, strategy=fallback)
            request = dataclasses.replace(request, hints=hints)
            scope.guards.append(f"strategy: {why} {decided.strategy.value}; ran {fallback.value}")
            decided = plan_fn(request)
        if scope.guards:
            extra = tuple(Reason("GUARD", g) for g in scope.guards)
            decided = dataclasses.replace(decided, reasons=decided.reasons + extra)
        record = current_record()
        if record is not None:
            record.strategy = decided.strategy.value
        return request, decided

    # ---- execution --------------------------------------------------------------------

    def execution(
        self,
        scope: Scope,
        decided: ExecutionPlan,
        deadline: float,
        before: tuple[Attempt, ...] = (),
    ) -> Execution:
        """Reserve the plan's maximum cost, run, then settle to what the attempts cost;
        ``before`` are calls already made for the request (the LLM classifier's)."""
        return Execution(self, scope, decided, deadline, before)

    async def charge(self, scope: Scope, attempts: Sequence[Attempt]) -> None:
        """Count calls made for a request that never ran (refused after the LLM
        classifier's call): in the metrics, and charged to the tenant's budgets, which a
        paid call passes whatever their limits."""
        if not attempts:
            return
        self.metrics.attempts(scope.tenant.name, tuple(attempts))
        cost = sum(a.cost_usd for a in attempts)
        if self.budgets is None or not scope.counters or cost <= 0:
            return
        try:
            reservation = await self.budgets.reserve(
                scope.tenant.name,
                f"{scope.request.request_id}#before",
                scope.counters,
                0.0,
                critical=True,
                hold_s=SETTLE_MARGIN_S,
            )
        except QuorumError as exc:
            log.warning("budget_charge_failed", tenant=scope.tenant.name, error=exc.message)
            return
        if reservation is not None:
            await self.settle(reservation, cost, time.monotonic() + SETTLE_WAIT_S)

    # ---- after ------------------------------------------------------------------------

    async def finish(self, scope: Scope, result: RouteResult) -> None:
        """Record the result's metrics and store it in the cache when allowed."""
        self.metrics.result(scope.tenant.name, result)
        record = current_record()
        if record is not None:
            record.model = result.model
        if self.tracing is not None:
            self.tracing.annotate(
                {
                    "quorum.model": result.model,
                    "quorum.strategy": result.strategy.value,
                    "quorum.cost_usd": result.cost_usd,
                    "quorum.cached": result.cached,
                }
            )
        # An answer a guard shaped (a budget's cheaper tier, a strategy the plan did not
        # allow) is not the answer to the request as asked: it is not cached under its key.
        if self.cache is not None and scope.cache_key is not None and not scope.guards:
            await self.cache.put(scope.cache_key, result)
