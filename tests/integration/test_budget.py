"""Budgets through a real server: reserve before calling, settle after, guards, overspend."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest

from quorum.client import AsyncQuorumClient, QuorumError
from quorum.route.v1 import types_pb2 as pb
from quorum.server.app import RunningServer, create_server
from quorum.server.budget.ledger import MICROS, Budgets
from quorum.server.config import parse_config
from tests.conftest import RedisServer, sim_config, with_model

PROMPT = "What is 17 * 23?"
HARD = "Prove that the square root of 2 is irrational, rigorously, step by step."


def budget_config(tenant_budget: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    data = sim_config(auth={"mode": "disabled"}, **overrides)
    data["tenants"] = {"acme": {"budget": tenant_budget}}
    return data


@asynccontextmanager
async def serving(data: dict[str, Any]) -> AsyncIterator[tuple[RunningServer, AsyncQuorumClient]]:
    running = create_server(parse_config(data), "127.0.0.1:0")
    await running.start()
    client = AsyncQuorumClient(f"127.0.0.1:{running.port}", timeout=20)
    try:
        yield running, client
    finally:
        await client.close()
        await running.drain(0.5)


def budgets_of(running: RunningServer) -> Budgets:
    budgets = running.router.guardrails.budgets
    assert budgets is not None
    return budgets


async def spend(running: RunningServer, usd: float) -> None:
    """Record ``usd`` as already spent by acme today."""
    budgets = budgets_of(running)
    counters = budgets.counters("acme", running.router.config.tenants["acme"].budget)
    held = await budgets.reserve("acme", "earlier", counters, 0.0, critical=False, hold_s=60)
    assert held is not None
    await budgets.settle(held, usd)


async def used(running: RunningServer) -> tuple[float, float]:
    """(spent, reserved) on acme's daily counter, in USD."""
    budgets = budgets_of(running)
    (counter,) = budgets.counters("acme", running.router.config.tenants["acme"].budget)
    ((spent, reserved),) = await budgets.store.read([counter.key])
    return spent / MICROS, reserved / MICROS


async def estimate(data: dict[str, Any], prompt: str) -> float:
    """The plan's estimated maximum cost of ``prompt`` (what a request reserves)."""
    async with serving(data) as (_, client):
        plan = await client.plan(prompt, tenant="acme")
    return plan.plan.estimated_cost_max_usd


CHAT = "Hello there, how are you today?"


def one_model_config() -> dict[str, Any]:
    """One model whose answers cost a little less than the planner's estimate (low
    difficulty: 150 output tokens expected, about 145 produced), with varying latency, so
    settling frees a little budget while other requests are still arriving."""
    data = sim_config(auth={"mode": "disabled"})
    data["tiers"] = ["only"]
    data["models"] = {
        "solo": {
            "provider": "sim",
            "tier": "only",
            "input_usd_per_mtok": 1.0,
            "output_usd_per_mtok": 4.0,
            "simulated": {"latency_ms_p50": 120, "latency_ms_p95": 300, "output_tokens": 250},
        }
    }
    data["routing"] = {}
    data["tenants"] = {"acme": {}}
    return data


async def test_200_concurrent_requests_cannot_overspend_a_budget_for_50() -> None:
    data = one_model_config()
    each = await estimate(data, CHAT)
    limit = 50 * each
    data["tenants"]["acme"]["budget"] = {"daily_usd": limit}
    async with serving(data) as (running, client):

        async def one(i: int) -> pb.RouteResponse:
            await asyncio.sleep(i * 0.004)  # arrivals spread over 0.8 s, overlapping settles
            return await client.route(CHAT, tenant="acme")

        results = await asyncio.gather(*(one(i) for i in range(200)), return_exceptions=True)
        spent, reserved = await used(running)
    answered = [r for r in results if isinstance(r, pb.RouteResponse)]
    refused = [r for r in results if isinstance(r, QuorumError)]
    assert len(answered) + len(refused) == 200
    for err in refused:
        assert err.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert err.reason == "BUDGET_EXHAUSTED"
        assert err.retry_after_s is not None
    total = sum(r.cost_usd for r in answered)
    print(
        f"in-process: limit ${limit:.6f} (50 x ${each:.6f}), {len(answered)} answered, "
        f"spent ${total:.6f}, overspend ${max(0.0, total - limit):.6f}"
    )
    assert len(answered) >= 45
    assert total <= limit + each
    assert spent == pytest.approx(total, abs=1e-6 * len(answered))  # settled to actual cost
    assert reserved == 0


async def test_above_the_soft_limit_requests_go_to_the_cheapest_tier() -> None:
    async with serving(budget_config({"daily_usd": 1.0})) as (running, client):
        assert (await client.route(HARD, tenant="acme")).model == "frontier"
        await spend(running, 0.9)
        r = await client.route(HARD, tenant="acme")
        assert r.model in ("flash", "flash-b")
        (note,) = r.guards
        assert re.search(r"tenant acme daily budget of \$1\.00 is 9\d% used", note)
        assert any(reason.code == "GUARD" for reason in r.plan.reasons)
        critical = await client.route(HARD, tenant="acme", hints=pb.RoutingHints(critical=True))
        assert not critical.guards  # critical requests are not downgraded
        assert "frontier" in {c.model for stage in critical.plan.stages for c in stage.candidates}
        plan = await client.plan(HARD, tenant="acme")
        assert plan.plan.stages[0].candidates[0].tier == "cheap"


async def test_at_the_limit_only_critical_requests_with_overdraft_run() -> None:
    data = budget_config({"daily_usd": 1.0, "overdraft_usd": 0.5})
    async with serving(data) as (running, client):
        await spend(running, 1.0)
        with pytest.raises(QuorumError) as info:
            await client.route(PROMPT, tenant="acme")
        err = info.value
        assert err.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert err.reason == "BUDGET_EXHAUSTED"
        assert "tenant acme daily budget of $1.00" in err.message
        assert err.retry_after_s is not None and 0 < err.retry_after_s <= 86_400
        plan = await client.plan(PROMPT, tenant="acme")
        assert any("Route would be refused" in r.message for r in plan.plan.reasons)
        r = await client.route(PROMPT, tenant="acme", hints=pb.RoutingHints(critical=True))
        assert r.content and "overdraft" in r.guards[0]
        # Other tenants are not affected by acme's budget.
        assert (await client.route(PROMPT)).content


async def test_a_failed_request_settles_to_what_it_cost() -> None:
    data = budget_config({"daily_usd": 1.0})
    for name in data["models"]:
        data = with_model(data, name, simulated={"failure_rate": 1.0})
    async with serving(data) as (running, client):
        with pytest.raises(QuorumError) as info:
            await client.route(PROMPT, tenant="acme")
        assert info.value.code is grpc.StatusCode.UNAVAILABLE
        assert await used(running) == (0.0, 0.0)


async def test_a_request_id_in_flight_cannot_be_reserved_twice() -> None:
    data = budget_config({"daily_usd": 1.0})
    for name in data["models"]:
        data = with_model(data, name, simulated={"latency_ms_p50": 900, "latency_ms_p95": 900})
    async with serving(data) as (running, client):
        first = asyncio.create_task(client.route(PROMPT, tenant="acme", request_id="same-id"))
        await asyncio.sleep(0.1)
        with pytest.raises(QuorumError) as info:
            await client.route(PROMPT, tenant="acme", request_id="same-id")
        assert info.value.reason == "REQUEST_IN_FLIGHT"
        assert info.value.code is grpc.StatusCode.ABORTED
        first_cost = (await first).cost_usd
        again = await client.route(PROMPT, tenant="acme", request_id="same-id")
        spent, reserved = await used(running)
        assert spent == pytest.approx(first_cost + again.cost_usd, abs=2e-6)
        assert reserved == 0


@pytest.mark.parametrize("mode", ["deny", "allow"])
async def test_an_unreachable_budget_store_denies_or_allows_as_configured(
    redis_server: RedisServer, mode: str
) -> None:
    data = budget_config({"daily_usd": 1.0}, budgets={"store_failure": mode})
    data["state"] = {"redis_url": redis_server.url}
    async with serving(data) as (_, client):
        assert (await client.route(PROMPT, tenant="acme")).content
        redis_server.stop()
        if mode == "allow":
            assert (await client.route(PROMPT, tenant="acme")).content
            return
        with pytest.raises(QuorumError) as info:
            await client.route(PROMPT, tenant="acme")
        err = info.value
        assert err.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert err.reason == "BUDGET_STORE_UNAVAILABLE" and err.retry_after_s == 1.0
        assert (await client.route(PROMPT)).content  # requests without a budget still run
        # Plan still explains, and says what Route would do now.
        plan = await client.plan(PROMPT, tenant="acme")
        assert any(
            "Route would be refused now: budget store unavailable" in r.message
            for r in plan.plan.reasons
        )
