"""Shadow evaluation: measure on live traffic whether a cheaper tier would have done.

A configured share of requests (chosen by a hash of the request id, so it is
reproducible) is sent again — after the caller has its answer, off the request path and
within its own daily budget — to the cheapest model of a cheaper tier that has the
capabilities the request needs. The two answers are compared with the task's
normaliser and the cheaper answer goes through the quality gate's basic checks; the
verdict is written to the decision log as a ``shadow`` line with ``outcome: "answered"``
and ``agree`` true or false. A shadow call that gives no answer (the cheaper model errored
or timed out) is no verdict on its quality: its line has ``outcome: "failed"``, ``agree:
null`` and the reason. ``quorum router report`` turns those lines into agreement rates and
recommendations per task and tier move, and counts the failed calls apart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from quorum.server.catalog import Catalog, ModelSpec
from quorum.server.decisions import DecisionLog
from quorum.server.domain import Candidate, Completion, RouteRequest, RouteResult, Sensitivity
from quorum.server.execute.gate import GatePolicy, evaluate, failure_summary
from quorum.server.execute.normalize import normalize, resolve
from quorum.server.hashing import fraction
from quorum.server.tokens import prompt_tokens
from quorum.server.values import value_type

log = structlog.get_logger("quorum.shadow")

ANSWERED = "answered"
"""``outcome`` of a shadow line whose answers were compared: ``agree`` is the verdict."""
FAILED = "failed"
"""``outcome`` of a shadow call that gave no answer (error, timeout): ``agree`` is null."""

ShadowCall = Callable[[RouteRequest, Candidate, float], Awaitable[tuple[Completion | None, float]]]


@value_type
class ShadowSettings:
    sample_rate: float = 0.0
    daily_budget_usd: float = 1.0
    timeout_s: float = 30.0


def sampled(request_id: str, rate: float) -> bool:
    """Deterministic sampling: the same request id always gets the same answer."""
    if rate <= 0:
        return False
    return fraction(request_id) < rate


def shadow_model(catalog: Catalog, request: RouteRequest, answered_by: str) -> ModelSpec | None:
    """The cheapest model of a cheaper tier able to serve the request, if any: one the
    request may go to (``catalog`` is its tenant's) and cleared for its sensitivity."""
    primary = catalog.models.get(answered_by)
    if primary is None or primary.tier_rank == 0:
        return None
    needed = request.needed_capabilities()
    sensitivity = request.hints.sensitivity or Sensitivity.PUBLIC
    for model in catalog.ordered():
        if (
            model.tier_rank < primary.tier_rank
            and needed <= model.capabilities
            and model.max_sensitivity >= sensitivity
        ):
            return model
    return None


class ShadowEvaluator:
    """Schedules shadow calls and logs their verdicts."""

    def __init__(
        self,
        settings: ShadowSettings,
        catalog: Catalog,
        call: ShadowCall,
        decisions: DecisionLog,
        clock: Callable[[], float] = time.time,
        gate: GatePolicy | None = None,
    ) -> None:
        self._settings = settings
        self._gate = gate or GatePolicy()
        self._catalog = catalog
        self._call = call
        self._decisions = decisions
        self._clock = clock
        self._day = -1
        self._spent = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    def consider(
        self, request: RouteRequest, result: RouteResult, catalog: Catalog | None = None
    ) -> None:
        """Maybe shadow ``result``'s request, within ``catalog`` (the models its tenant
        may use; default: all); never blocks, never raises."""
        if result.cached or not sampled(request.request_id, self._settings.sample_rate):
            return
        model = shadow_model(catalog or self._catalog, request, result.model)
        if model is None:
            return
        day = int(self._clock() // 86_400)
        if day != self._day:
            self._day, self._spent = day, 0.0
        # Its cost is counted before the call, so calls in flight together cannot pass
        # the budget; the actual cost replaces the estimate when the call ends.
        estimate = model.estimate_cost(
            prompt_tokens(request.messages), result.completion.usage.output_tokens or 256
        )
        if self._spent + estimate > self._settings.daily_budget_usd:
            return
        self._spent += estimate
        task = asyncio.get_running_loop().create_task(
            self._run(request, result, model, estimate, day)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self,
        request: RouteRequest,
        result: RouteResult,
        model: ModelSpec,
        estimate: float,
        day: int,
    ) -> None:
        candidate = Candidate(model.name, model.provider, model.tier, 0.0)
        cost = estimate  # a call that raised may still have been billed
        completion: Completion | None = None
        failure = "shadow call failed: no answer (error or timeout)"
        try:
            completion, cost = await self._call(request, candidate, self._settings.timeout_s)
        except Exception as exc:  # shadow traffic must never disturb serving
            log.warning("shadow_failed", model=model.name, error=type(exc).__name__)
            failure = f"shadow call failed: {type(exc).__name__}"
        finally:
            if day == self._day:
                self._spent += cost - estimate
        record: dict[str, Any] = {
            "type": "shadow",
            "ts": self._clock(),
            "request_id": result.request_id,
            "task": result.classification.task,
            "agent": result.classification.agent,
            "primary_model": result.model,
            "primary_tier": self._catalog.models[result.model].tier,
            "primary_cost_usd": result.cost_usd,
            "shadow_model": model.name,
            "shadow_tier": model.tier,
            "shadow_cost_usd": cost,
        }
        if completion is None:
            # Not a verdict: the cheaper model gave nothing that could be compared.
            record |= {"outcome": FAILED, "agree": None, "reason": failure}
        else:
            verdict = evaluate(request, completion, self._gate)
            name = resolve("auto", request, result.classification.task)
            ours = normalize(name, result.completion.content)
            theirs = normalize(name, completion.content)
            agree = verdict.passed and bool(ours) and ours == theirs
            # An answer the gate would not have served (a refusal, invalid JSON, ...) is
            # no substitute, whatever it says.
            reason = failure_summary(verdict) if not verdict.passed else name
            record |= {
                "outcome": ANSWERED,
                "agree": agree,
                "reason": f"{reason} {'equal' if agree else 'differ'}"
                if verdict.passed
                else reason,
            }
        self._decisions.note(record)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
