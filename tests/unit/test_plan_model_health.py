"""The planner judges a model by the breakers it runs under, not by its provider's.

A model with ``deployments:``, or on a provider whose ``breaker.scope`` is ``model``, runs
under breakers of its own (``provider/model_id``); its provider's breaker stays closed
when they open. The planner must still see the model as open: moved last, out of the
failover slots, not a voter, not the judge, and shown open in the plan.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from quorum.server.catalog import Catalog, breaker_keys, build_catalog
from quorum.server.config import Config, parse_config
from quorum.server.domain import (
    BreakerState,
    Classification,
    Difficulty,
    ExecutionPlan,
    Hints,
    Message,
    Role,
    RouteRequest,
    Strategy,
)
from quorum.server.errors import ProviderUnavailable
from quorum.server.plan import plan
from quorum.server.policy import build_policy
from quorum.server.resilience.breakers import Breakers, ProviderHealth
from quorum.server.state import StateSnapshot, model_breakers

SHAPES = ("deployments", "scope_model")
OPEN = ProviderHealth(BreakerState.OPEN, 1, 0.0)
CLOSED = ProviderHealth(BreakerState.CLOSED, 0, 0.0)


def _model(tier: str, price: float, **where: Any) -> dict[str, Any]:
    return {"tier": tier, "input_usd_per_mtok": price, "output_usd_per_mtok": price} | where


def _config(shape: str, *, failover: int = 2) -> Config:
    """``dead`` (cheapest) and ``top-dead`` (the dearest premium model) run under their
    own breakers on provider ``pd``; the others under their providers' breakers. ``pd``
    also serves ``pd-ok``, so with breaker scope ``model`` the provider stays closed
    (its healthiest model's state) while those two are open."""
    breaker: dict[str, Any] = {"fail_max": 1, "reset_timeout_s": 60}
    dead: dict[str, Any]
    top_dead: dict[str, Any]
    if shape == "scope_model":
        breaker["scope"] = "model"
        dead = {"provider": "pd", "model_id": "dead-1"}
        top_dead = {"provider": "pd", "model_id": "top-1"}
    else:
        dead = {"deployments": [{"provider": "pd", "model_id": "dead-1"}]}
        top_dead = {"deployments": [{"provider": "pd", "model_id": "top-1"}]}
    providers = {
        name: {"kind": "openai", "base_url": f"http://{name}.invalid", "breaker": breaker}
        for name in ("pd", "q", "r")
    }
    return parse_config(
        {
            "providers": providers,
            "tiers": ["cheap", "premium"],
            "models": {
                "dead": _model("cheap", 0.1, **dead),
                "flaky": _model("cheap", 0.2, provider="q", model_id="flaky"),
                "good": _model("cheap", 0.3, provider="r", model_id="good"),
                "pd-ok": _model("cheap", 0.4, provider="pd", model_id="ok"),
                "top": _model("premium", 5.0, provider="r", model_id="top"),
                "top-dead": _model("premium", 9.0, **top_dead),
            },
            "routing": {
                "baseline_model": "top",
                "difficulty_tiers": {"low": "cheap", "medium": "cheap", "high": "premium"},
                "max_failover_attempts": failover,
                "performance": {"explore_share": 0.0},
                "consensus": {"size": 2},
            },
            "decisions": {"sink": "none"},
        }
    )


def _open(breakers: Breakers, key: str) -> None:
    with contextlib.suppress(ProviderUnavailable):
        with breakers.guard(key):
            raise ProviderUnavailable(f"{key}: HTTP 503", provider=key, status=503)
    assert breakers.health(key).state is BreakerState.OPEN


def _live_snapshot(config: Config, catalog: Catalog, *models: str) -> StateSnapshot:
    """A snapshot from real breakers, with every breaker of ``models`` opened."""
    breakers = Breakers(
        {n: p.breaker for n, p in config.providers.items()}, deployments=breaker_keys(catalog)
    )
    for name in models:
        for key in model_breakers(catalog.models[name]):
            _open(breakers, key)
    return StateSnapshot(providers=breakers.snapshot())


def _plan(config: Config, snapshot: StateSnapshot, **hints: Any) -> ExecutionPlan:
    catalog = build_catalog(config)
    request = RouteRequest("r1", (Message(Role.USER, "hello"),), hints=Hints(**hints))
    classification = Classification("chat", Difficulty.LOW, 0.9, "rules")
    return plan(request, classification, catalog, build_policy(config), snapshot)


def _candidates(decided: ExecutionPlan) -> list[tuple[str, BreakerState]]:
    return [(c.model, c.breaker_state) for s in decided.stages for c in s.candidates]


@pytest.mark.parametrize("shape", SHAPES)
def test_a_model_whose_own_breaker_is_open_goes_last_and_loses_its_failover_slot(
    shape: str,
) -> None:
    config = _config(shape)
    catalog = build_catalog(config)
    assert model_breakers(catalog.models["dead"]) == ("pd/dead-1",)
    snapshot = _live_snapshot(config, catalog, "dead")
    # The provider's own breaker never saw a call: the Plan RPC still lists it closed.
    assert snapshot.health("pd").state is BreakerState.CLOSED
    assert snapshot.model_health(catalog.models["dead"]).state is BreakerState.OPEN

    decided = _plan(config, snapshot)
    assert _candidates(decided) == [("flaky", BreakerState.CLOSED), ("good", BreakerState.CLOSED)]
    last = next(r for r in decided.reasons if r.code == "UNHEALTHY_LAST")
    assert "dead (open)" in last.message


@pytest.mark.parametrize("shape", SHAPES)
def test_a_forced_model_under_an_open_breaker_is_shown_open(shape: str) -> None:
    config = _config(shape, failover=6)
    snapshot = _live_snapshot(config, build_catalog(config), "dead")
    decided = _plan(config, snapshot, model="dead")
    candidates = [c for s in decided.stages for c in s.candidates]
    dead = next(c for c in candidates if c.model == "dead")
    assert dead.breaker_state is BreakerState.OPEN
    assert "breaker pd/dead-1 open" in dead.note
    assert candidates[0].model != "dead"  # unhealthy, even forced: tried last


@pytest.mark.parametrize("shape", SHAPES)
def test_consensus_leaves_out_a_voter_and_a_judge_whose_own_breaker_is_open(shape: str) -> None:
    config = _config(shape)  # no judge_model: the most capable healthy model judges
    snapshot = _live_snapshot(config, build_catalog(config), "dead", "top-dead")
    voted = _plan(config, snapshot, strategy=Strategy.CONSENSUS_MAJORITY)
    voters = [c.model for c in voted.stages[0].candidates]
    assert "dead" not in voters and "top-dead" not in voters
    judged = _plan(config, snapshot, strategy=Strategy.CONSENSUS_JUDGE)
    judge = judged.stages[-1].candidates[0]
    assert (judge.model, judge.breaker_state) == ("top", BreakerState.CLOSED)


@pytest.mark.parametrize("shape", SHAPES)
def test_a_cascade_tier_starts_with_a_model_that_can_be_called(shape: str) -> None:
    config = _config(shape)
    snapshot = _live_snapshot(config, build_catalog(config), "dead")
    decided = _plan(config, snapshot, strategy=Strategy.CASCADE)
    assert decided.stages[0].candidates[0].model == "flaky"


def test_a_model_is_as_healthy_as_its_best_deployment() -> None:
    config = parse_config(
        {
            "providers": {
                n: {"kind": "openai", "base_url": f"http://{n}.invalid"} for n in ("a", "b", "c")
            },
            "tiers": ["cheap"],
            "models": {
                "twin": _model(
                    "cheap",
                    0.1,
                    deployments=[
                        {"provider": "a", "model_id": "m"},
                        {"provider": "b", "model_id": "m"},
                    ],
                ),
                "other": _model("cheap", 0.2, provider="c", model_id="o"),
            },
            "routing": {"baseline_model": "other", "max_failover_attempts": 2},
            "decisions": {"sink": "none"},
        }
    )
    twin = build_catalog(config).models["twin"]
    assert model_breakers(twin) == ("a/m", "b/m")
    half = ProviderHealth(BreakerState.HALF_OPEN, 1, 0.0)
    one_open = StateSnapshot(providers={"a": CLOSED, "b": CLOSED, "a/m": OPEN, "b/m": half})
    assert one_open.model_health(twin).state is BreakerState.HALF_OPEN
    assert _candidates(_plan(config, one_open))[0] == ("twin", BreakerState.HALF_OPEN)
    both_open = StateSnapshot(providers={"a/m": OPEN, "b/m": OPEN})
    assert _candidates(_plan(config, both_open)) == [
        ("other", BreakerState.CLOSED),
        ("twin", BreakerState.OPEN),
    ]
    # The providers' own breakers do not speak for deployments with breakers of their own.
    providers_open = StateSnapshot(providers={"a": OPEN, "b": OPEN})
    assert _candidates(_plan(config, providers_open))[0] == ("twin", BreakerState.CLOSED)
