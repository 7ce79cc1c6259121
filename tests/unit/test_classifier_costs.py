"""The LLM classifier's model calls are paid for: they are attempts in the account."""

from __future__ import annotations

import asyncio
import json

import pytest

from quorum.server.budget.ledger import to_micros
from quorum.server.config import parse_config
from quorum.server.domain import (
    AttemptOutcome,
    Completion,
    Hints,
    Message,
    Role,
    RouteRequest,
    Usage,
)
from quorum.server.errors import NoCandidate, ProviderTimeout
from quorum.server.providers.base import Provider, ProviderRequest
from quorum.server.router import Router
from tests.conftest import sim_config

CLASSIFIER_USAGE = Usage(400, 30)


class AnswersTheClassifier:
    """A provider whose classifier calls get a fixed JSON answer (after ``delay_s``)."""

    def __init__(self, inner: Provider, delay_s: float = 0.0) -> None:
        self.inner = inner
        self.delay_s = delay_s
        self.calls = 0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def kind(self) -> str:
        return self.inner.kind

    async def complete(self, request: ProviderRequest) -> Completion:
        if request.messages[0].role is Role.SYSTEM and "classif" in request.messages[0].content:
            self.calls += 1
            await asyncio.sleep(self.delay_s)
            answer = {"task": "chat", "difficulty": "low", "confidence": 0.9}
            return Completion(json.dumps(answer), usage=CLASSIFIER_USAGE)
        return await self.inner.complete(request)

    def stream(self, request: ProviderRequest) -> object:
        return self.inner.stream(request)

    async def close(self) -> None:
        await self.inner.close()


def _router(timeout_ms: int, delay_s: float) -> tuple[Router, AnswersTheClassifier]:
    router = Router(
        parse_config(sim_config(classifier={"llm": {"model": "mid", "timeout_ms": timeout_ms}}))
    )
    wrapped = AnswersTheClassifier(router.providers["sim"], delay_s)
    router.providers["sim"] = wrapped  # type: ignore[assignment]
    return router, wrapped


UNSURE = RouteRequest("r-1", (Message(Role.USER, "Blorp the frobnicator, please."),), hints=Hints())


async def test_the_classifier_call_is_an_attempt_with_its_cost() -> None:
    router, wrapped = _router(timeout_ms=2000, delay_s=0.0)
    try:
        result = await router.route(UNSURE)
    finally:
        await router.close()
    assert wrapped.calls == 1
    first = result.attempts[0]
    assert (first.model, first.role, first.outcome) == (
        "mid",
        "classifier",
        AttemptOutcome.SUCCEEDED,
    )
    assert first.usage == CLASSIFIER_USAGE
    assert first.cost_usd == router.catalog.models["mid"].cost(CLASSIFIER_USAGE) > 0
    assert result.cost_usd == sum(a.cost_usd for a in result.attempts)
    assert result.usage.input_tokens >= CLASSIFIER_USAGE.input_tokens


async def test_a_classifier_call_cut_off_by_its_time_limit_is_charged_its_prompt() -> None:
    router, wrapped = _router(timeout_ms=50, delay_s=1.0)
    try:
        result = await router.route(UNSURE)
    finally:
        await router.close()
    first = result.attempts[0]
    assert (first.role, first.outcome) == ("classifier", AttemptOutcome.CANCELLED)
    assert first.usage.input_tokens > 0 and first.cost_usd > 0
    assert wrapped.calls == 1


async def test_the_classifier_call_starts_before_execution() -> None:
    # Attempts are timed from the start of execution; the classifier's came before it.
    router, _ = _router(timeout_ms=2000, delay_s=0.0)
    try:
        result = await router.route(UNSURE)
    finally:
        await router.close()
    first, *rest = result.attempts
    assert first.role == "classifier" and first.started_ms < 0
    assert all(a.started_ms >= 0 for a in rest)


async def test_a_classifier_call_the_breaker_refused_is_skipped_not_failed() -> None:
    router, wrapped = _router(timeout_ms=2000, delay_s=0.0)
    router.breakers.cool_down("sim", 30.0)  # the classifier model's provider
    try:
        result = await router.route(UNSURE)
    finally:
        await router.close()
    first = result.attempts[0]
    assert (first.role, first.outcome) == ("classifier", AttemptOutcome.SKIPPED)
    assert first.cost_usd == 0 and wrapped.calls == 0


async def test_a_request_refused_after_the_classifier_call_is_still_charged_for_it() -> None:
    data = sim_config(
        auth={"mode": "disabled"},
        classifier={"llm": {"model": "mid", "timeout_ms": 2000}},
    )
    data["tenants"] = {"acme": {"budget": {"daily_usd": 10.0}}}
    router = Router(parse_config(data))
    router.providers["sim"] = AnswersTheClassifier(router.providers["sim"])  # type: ignore[assignment]
    impossible = RouteRequest(  # no model fits a zero cost ceiling: refused when planning
        "r-2", UNSURE.messages, hints=Hints(max_cost_usd=0.0), tenant="acme"
    )
    try:
        with pytest.raises(NoCandidate):
            await router.route(impossible)
        budgets = router.guardrails.budgets
        assert budgets is not None
        counters = budgets.counters("acme", router.config.tenants["acme"].budget)
        (state,) = [s for s in await budgets.read(counters) if s.counter.period.value == "day"]
    finally:
        await router.close()
    assert state.spent == to_micros(router.catalog.models["mid"].cost(CLASSIFIER_USAGE))


class TimesOutTheClassifier(AnswersTheClassifier):
    """The classifier's calls end in the provider's own timeout (its timer fired first)."""

    async def complete(self, request: ProviderRequest) -> Completion:
        if request.messages[0].role is Role.SYSTEM and "classif" in request.messages[0].content:
            self.calls += 1
            raise ProviderTimeout("sim: no answer in time", provider="sim")
        return await self.inner.complete(request)


async def test_classifier_timeouts_do_not_open_the_providers_breaker() -> None:
    # The classifier's limit (300 ms) is its own haste: like a caller's short deadline it
    # must not open the breaker that the provider's real answers go through.
    data = sim_config(classifier={"llm": {"model": "mid", "timeout_ms": 300}})
    data["providers"]["sim"]["breaker"] = {"fail_max": 2}
    router = Router(parse_config(data))
    wrapped = TimesOutTheClassifier(router.providers["sim"])
    router.providers["sim"] = wrapped  # type: ignore[assignment]
    try:
        results = [await router.route(UNSURE) for _ in range(4)]
        health = router.breakers.health("sim")
    finally:
        await router.close()
    assert wrapped.calls == 4
    assert all("llm-timeout" in r.classification.signals for r in results)
    assert health.failure_count == 0
