"""USD amounts in the config are bounded: budgets are counted in integer micro-dollars,
and a limit of 1e303 passed check-config, then failed every Route and Plan with INTERNAL
(an OverflowError in budget/ledger.py to_micros)."""

from __future__ import annotations

from typing import Any

import pytest

from quorum.server.budget.ledger import Budgets, MemoryBudgetStore, to_micros
from quorum.server.config import BudgetLimits, load_config_text, parse_config
from quorum.server.config.fields import MAX_USD
from quorum.server.domain import Hints, Message, Role, RouteRequest
from quorum.server.errors import ConfigError
from quorum.server.router import Router
from tests.conftest import sim_config

DIGEST = "a" * 64
TOO_MUCH = f"Input should be less than or equal to {MAX_USD}"


def _problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return list(info.value.problems)


def _tenant(budget: dict[str, Any]) -> dict[str, Any]:
    return {"t1": {"token_sha256": DIGEST, "budget": budget}}


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"budgets": {"global": {"daily_usd": 1.0e303}}}, "budgets.global.daily_usd"),
        ({"budgets": {"global": {"monthly_usd": 1e308}}}, "budgets.global.monthly_usd"),
        (
            {"budgets": {"global": {"daily_usd": 10, "overdraft_usd": 1e305}}},
            "budgets.global.overdraft_usd",
        ),
        ({"tenants": _tenant({"daily_usd": 1.0e303})}, "tenants.t1.budget.daily_usd"),
        ({"tenants": _tenant({"monthly_usd": 1e308})}, "tenants.t1.budget.monthly_usd"),
        (
            {"tenants": _tenant({"daily_usd": 1, "overdraft_usd": 1e305})},
            "tenants.t1.budget.overdraft_usd",
        ),
        ({"shadow": {"daily_budget_usd": 1e303}}, "shadow.daily_budget_usd"),
        ({"budgets": {"global": {"daily_usd": MAX_USD + 1}}}, "budgets.global.daily_usd"),
    ],
)
def test_a_usd_amount_past_the_bound_is_named(overrides: dict[str, Any], path: str) -> None:
    assert _problems(sim_config(**overrides)) == [f"{path}: {TOO_MUCH}"]


def test_the_reviewers_yaml_is_refused() -> None:
    text = (
        "providers: {sim: {kind: simulated}}\ntiers: [cheap]\n"
        "models: {a: {provider: sim, tier: cheap, input_usd_per_mtok: 0.1, "
        "output_usd_per_mtok: 0.4}}\n"
        "budgets: {global: {daily_usd: 1.0e+303}}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "c.yaml")
    assert info.value.problems == (f"budgets.global.daily_usd: {TOO_MUCH}",)


def test_the_bound_stays_exact_in_micro_dollars() -> None:
    # Redis counts with HINCRBY (int64) and compares in Lua numbers (doubles, exact to
    # 2**53): a limit plus its overdraft, both at the bound, must stay exact there.
    assert to_micros(MAX_USD) + to_micros(MAX_USD) < 2**53


async def test_the_largest_accepted_budgets_still_reserve_and_settle() -> None:
    limits = {"daily_usd": MAX_USD, "monthly_usd": MAX_USD, "overdraft_usd": MAX_USD}
    config = parse_config(sim_config(budgets={"global": limits}, tenants=_tenant(limits)))
    budgets = Budgets(config.budgets, MemoryBudgetStore())
    counters = budgets.counters("t1", BudgetLimits.model_validate(limits))
    assert {c.limit for c in counters} == {MAX_USD * 1_000_000}
    reservation = await budgets.reserve("t1", "r1", counters, 12.5, critical=True, hold_s=30)
    assert reservation is not None
    await budgets.settle(reservation, 2.0)
    assert [state.spent for state in await budgets.read(counters)] == [2_000_000] * 4


async def test_route_and_plan_serve_with_the_largest_accepted_budgets() -> None:
    limits = {"daily_usd": MAX_USD, "monthly_usd": MAX_USD, "overdraft_usd": MAX_USD}
    router = Router(
        parse_config(
            sim_config(
                auth={"mode": "disabled"}, budgets={"global": limits}, tenants=_tenant(limits)
            )
        )
    )
    request = RouteRequest("r-1", (Message(Role.USER, "What is 2+2?"),), hints=Hints())
    try:
        assert (await router.route(request)).model
        assert (await router.route(request.with_hints(request.hints, tenant="t1"))).model
        assert (await router.explain(request)).plan.candidates
    finally:
        await router.close()
