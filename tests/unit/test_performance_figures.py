"""Performance-based ordering by quality, latency and cost as the priority weighs them,
cold-start priors, the figures in the Plan, and the stores behind them."""

from __future__ import annotations

from typing import Any

import pytest

from quorum.server.catalog import build_catalog
from quorum.server.config import parse_config
from quorum.server.domain import (
    Attempt,
    AttemptOutcome,
    Classification,
    Difficulty,
    Hints,
    Message,
    Priority,
    Role,
    RouteRequest,
)
from quorum.server.errors import ConfigError
from quorum.server.observed import LocalWindows, build_observed, smoothed_window
from quorum.server.performance import PerformancePolicy, rank
from quorum.server.plan import plan
from quorum.server.policy import build_policy
from quorum.server.state import StateSnapshot, accuracy_key
from tests.conftest import sim_config

CONFIG = parse_config(sim_config())
CATALOG = build_catalog(CONFIG)
# flash is the cheaper (0.1/0.4 per Mtok), flash-b the dearer (0.15/0.6); equal priors.
CHEAP = [CATALOG.models["flash"], CATALOG.models["flash-b"]]
POLICY = PerformancePolicy(explore_share=0.0)
COSTS = {"flash": 0.0001, "flash-b": 0.00015}  # price-based estimates for one request


def _snapshot(
    quality: dict[str, float] | None = None,
    latency: dict[str, float] | None = None,
    cost: dict[str, float] | None = None,
    task: str = "chat",
) -> StateSnapshot:
    def keyed(figures: dict[str, float] | None) -> dict[str, float]:
        return {accuracy_key(m, task): v for m, v in (figures or {}).items()}

    return StateSnapshot(
        model_quality=keyed(quality), model_latency_ms=keyed(latency), model_cost_usd=keyed(cost)
    )


def _order(snapshot: StateSnapshot, priority: Priority, **policy: Any) -> list[str]:
    estimates, _ = rank(
        CHEAP,
        "chat",
        snapshot,
        PerformancePolicy(explore_share=0.0, **policy),
        "r",
        priority=priority,
        costs=COSTS,
    )
    return [e.model for e in estimates]


# ---- ordering per priority ------------------------------------------------------------


def test_latency_priority_puts_the_faster_of_equals_first() -> None:
    snapshot = _snapshot(latency={"flash": 400.0, "flash-b": 3.0})
    assert _order(snapshot, Priority.LATENCY) == ["flash-b", "flash"]
    # The same figures under quality priority: quality ties, the cheaper model first.
    assert _order(snapshot, Priority.QUALITY) == ["flash", "flash-b"]


def test_latency_priority_quality_guard() -> None:
    # Clearly worse (more than the 0.10 margin below the best): fast does not make up for it.
    worse = _snapshot(
        quality={"flash": 0.95, "flash-b": 0.80}, latency={"flash": 400.0, "flash-b": 3.0}
    )
    assert _order(worse, Priority.LATENCY) == ["flash", "flash-b"]
    # Within the margin: the faster one wins.
    close = _snapshot(
        quality={"flash": 0.95, "flash-b": 0.88}, latency={"flash": 400.0, "flash-b": 3.0}
    )
    assert _order(close, Priority.LATENCY) == ["flash-b", "flash"]
    # The margin is the policy's.
    assert _order(close, Priority.LATENCY, quality_margin=0.05) == ["flash", "flash-b"]


def test_latency_within_noise_leaves_quality_and_price_to_decide() -> None:
    # 10% or 20 ms apart counts as equally fast: the cheaper model keeps the traffic.
    assert _order(_snapshot(latency={"flash": 12.0, "flash-b": 4.0}), Priority.LATENCY) == [
        "flash",
        "flash-b",
    ]
    assert _order(_snapshot(latency={"flash": 1050.0, "flash-b": 1000.0}), Priority.LATENCY) == [
        "flash",
        "flash-b",
    ]
    assert _order(_snapshot(latency={"flash": 1300.0, "flash-b": 1000.0}), Priority.LATENCY) == [
        "flash-b",
        "flash",
    ]


def test_cost_priority_orders_by_what_answers_actually_cost() -> None:
    # flash is cheaper per token but writes far more: its answers cost more.
    verbose = _snapshot(cost={"flash": 0.0009, "flash-b": 0.0002})
    assert _order(verbose, Priority.COST) == ["flash-b", "flash"]
    # ... unless it is clearly worse: then quality guards.
    guarded = _snapshot(
        quality={"flash": 0.9, "flash-b": 0.7}, cost={"flash": 0.0009, "flash-b": 0.0002}
    )
    assert _order(guarded, Priority.COST) == ["flash", "flash-b"]


def test_balanced_blends_small_latency_and_cost_penalties_into_quality() -> None:
    # Quality leads: 0.10 better outweighs being ten times slower and twice as dear
    # (0.95 - 0.05 - 0.05 = 0.85 against 0.85 - 0.05 * 200/2000 - 0.05 * 0.5 = 0.82) ...
    better = _snapshot(
        quality={"flash": 0.85, "flash-b": 0.95},
        latency={"flash": 200.0, "flash-b": 2000.0},
        cost={"flash": 0.0001, "flash-b": 0.0002},
    )
    assert _order(better, Priority.BALANCED) == ["flash-b", "flash"]
    # ... while between close qualities speed and price decide: 0.86 - 0.005 - 0.025
    # = 0.83 against 0.87 - 0.05 - 0.05 = 0.77.
    close = _snapshot(
        quality={"flash": 0.86, "flash-b": 0.87},
        latency={"flash": 200.0, "flash-b": 2000.0},
        cost={"flash": 0.0001, "flash-b": 0.0002},
    )
    assert _order(close, Priority.BALANCED) == ["flash", "flash-b"]
    assert _order(close, Priority.QUALITY) == ["flash-b", "flash"]
    # A few milliseconds between fast models weigh next to nothing (scale at least 1 s).
    fast = _snapshot(latency={"flash": 9.0, "flash-b": 2.0})
    assert _order(fast, Priority.BALANCED) == ["flash", "flash-b"]


def test_quality_priority_is_quality_only() -> None:
    snapshot = _snapshot(
        quality={"flash": 0.80, "flash-b": 0.82},
        latency={"flash": 5.0, "flash-b": 5000.0},
        cost={"flash": 0.00001, "flash-b": 0.01},
    )
    assert _order(snapshot, Priority.QUALITY) == ["flash-b", "flash"]


# ---- cold start -----------------------------------------------------------------------


def test_cold_start_orders_as_before_for_every_priority() -> None:
    # Nothing measured: equal quality priors, no latency, price-based costs → cheapest first.
    for priority in Priority:
        assert _order(StateSnapshot(), priority) == ["flash", "flash-b"], priority
    estimates, _ = rank(CHEAP, "chat", StateSnapshot(), POLICY, "r", costs=COSTS)
    assert [(e.latency_ms, e.cost_usd, e.cost_observed) for e in estimates] == [
        (None, 0.0001, False),
        (None, 0.00015, False),
    ]


def test_an_unmeasured_model_is_tried_first_under_latency_priority() -> None:
    # flash is measured (slow); flash-b is not: it is tried, so its latency becomes known.
    snapshot = _snapshot(latency={"flash": 400.0})
    assert _order(snapshot, Priority.LATENCY) == ["flash-b", "flash"]
    # Balanced has no latency preference for it: it counts as the measured average.
    assert _order(snapshot, Priority.BALANCED) == ["flash", "flash-b"]
    # Still only within the quality margin.
    worse = _snapshot(quality={"flash": 0.95, "flash-b": 0.5}, latency={"flash": 400.0})
    assert _order(worse, Priority.LATENCY) == ["flash", "flash-b"]


def test_cost_prior_is_the_price_estimate_scaled_by_measured_peers() -> None:
    # flash's answers cost half its estimate: flash-b's prior is half its own estimate.
    snapshot = _snapshot(cost={"flash": 0.00005})
    estimates, _ = rank(CHEAP, "chat", snapshot, POLICY, "r", priority=Priority.COST, costs=COSTS)
    by_model = {e.model: e for e in estimates}
    assert by_model["flash"].cost_observed and by_model["flash"].cost_usd == 0.00005
    assert not by_model["flash-b"].cost_observed
    assert by_model["flash-b"].cost_usd == pytest.approx(0.000075)
    # Without estimates for the request: a thousand tokens at the blended mix.
    bare, _ = rank(CHEAP, "chat", StateSnapshot(), POLICY, "r")
    assert bare[0].cost_usd == pytest.approx(CHEAP[0].estimate_cost(250, 750))


def test_exploration_samples_quality_whatever_the_priority() -> None:
    # Exploring requests order by a Thompson draw of quality, so the slow model still
    # gets some of them and its figures are re-measured.
    snapshot = _snapshot(latency={"flash": 400.0, "flash-b": 3.0})
    policy = PerformancePolicy(explore_share=1.0)
    firsts = {
        rank(CHEAP, "chat", snapshot, policy, f"x-{i}", priority=Priority.LATENCY, costs=COSTS)[0][
            0
        ].model
        for i in range(100)
    }
    assert firsts == {"flash", "flash-b"}
    _, explored = rank(CHEAP, "chat", snapshot, policy, "x-1", priority=Priority.LATENCY)
    assert explored


# ---- the Plan's figures -----------------------------------------------------------------


def _plan(priority: Priority, snapshot: StateSnapshot, use_case: str = "") -> Any:
    request = RouteRequest(
        "r1", (Message(Role.USER, "hi"),), hints=Hints(priority=priority, use_case=use_case)
    )
    cls = Classification("chat", Difficulty.LOW, 0.9, "rules")
    return plan(request, cls, CATALOG, build_policy(CONFIG), snapshot)


def _performance_reason(decided: Any) -> str:
    (reason,) = [r for r in decided.reasons if r.code == "PERFORMANCE"]
    return str(reason.message)


def test_plan_shows_quality_latency_and_cost_marking_priors() -> None:
    snapshot = _snapshot(
        quality={"flash-b": 0.95}, latency={"flash-b": 412.4}, cost={"flash-b": 0.000123}
    )
    decided = _plan(Priority.BALANCED, snapshot)
    message = _performance_reason(decided)
    assert message.startswith("tier cheap on chat, balanced, quality - 0.05 x latency/slowest")
    assert "flash-b 0.95, 412 ms, $0.000123;" in message
    assert "flash 0.75 (prior), latency unmeasured, $" in message
    assert message.endswith("(prior)")  # flash's cost is its (scaled) price estimate


def test_plan_orders_by_latency_for_a_latency_use_case() -> None:
    data = sim_config()
    data["routing"]["use_cases"]["chat"] = {"priority": "latency"}
    config = parse_config(data)
    snapshot = _snapshot(
        latency={"flash": 400.0, "flash-b": 2.0}, cost={"flash": 0.00003, "flash-b": 0.000033}
    )
    request = RouteRequest("r1", (Message(Role.USER, "hi"),), hints=Hints(use_case="chat"))
    cls = Classification("chat", Difficulty.LOW, 0.9, "rules")
    decided = plan(request, cls, build_catalog(config), build_policy(config), snapshot)
    assert [c.model for c in decided.candidates][:2] == ["flash-b", "flash"]
    message = _performance_reason(decided)
    assert "latency priority, fastest within 0.10 of the best quality" in message
    assert "flash-b 0.75 (prior), 2 ms, $0.000033; flash 0.75 (prior), 400 ms, $0.000030" in message
    # Quality priority on the same figures keeps the cheaper of two equals (its tier is
    # the most capable one; pin the cheap tier to compare like with like).
    pinned = RouteRequest(
        "r1", (Message(Role.USER, "hi"),), hints=Hints(priority=Priority.QUALITY, tier="cheap")
    )
    decided = plan(pinned, cls, build_catalog(config), build_policy(config), snapshot)
    assert decided.candidates[0].model == "flash"
    assert "by observed quality" in _performance_reason(decided)


def test_plan_is_pure_in_its_figures() -> None:
    snapshot = _snapshot(latency={"flash": 400.0, "flash-b": 2.0})
    assert _plan(Priority.LATENCY, snapshot) == _plan(Priority.LATENCY, snapshot)


# ---- the stores -----------------------------------------------------------------------


def test_figures_are_exponentially_weighted_means() -> None:
    windows = LocalWindows(window=44, min_samples=3, smoothing=0.5)
    for value in (100.0, 100.0):
        windows.record("m/chat", value)
    assert "m/chat" not in windows.rates()  # too few answers to count
    windows.record("m/chat", 400.0)
    # Weights 0.25, 0.5, 1 (normalised): (25 + 50 + 400) / 1.75.
    assert windows.rates()["m/chat"] == pytest.approx(475 / 1.75)
    handed_out = windows.rates()
    windows.record("m/chat", 400.0)
    assert windows.rates()["m/chat"] > handed_out["m/chat"]  # a mapping handed out stays
    assert handed_out["m/chat"] == pytest.approx(475 / 1.75)


def test_window_keeps_only_the_answers_that_still_weigh() -> None:
    assert smoothed_window(0.1, 3, 200) == 44
    assert smoothed_window(0.1, 60, 200) == 60  # never fewer than min_samples
    assert smoothed_window(0.01, 3, 200) == 200  # never more than the window
    assert smoothed_window(1.0, 1, 200) == 1


def _attempt(model: str, role: str, outcome: AttemptOutcome, ms: float, usd: float) -> Attempt:
    return Attempt(model, "sim", "cheap", role, outcome, "", latency_ms=ms, cost_usd=usd)


def test_only_answers_to_the_request_are_measured() -> None:
    observed = build_observed(parse_config(sim_config()))
    attempts = [
        _attempt("flash", "primary", AttemptOutcome.FAILED, 30_000.0, 0.0),  # no answer
        _attempt("flash", "classifier", AttemptOutcome.SUCCEEDED, 80.0, 0.00001),
        _attempt("mid", "judge", AttemptOutcome.SUCCEEDED, 900.0, 0.001),
        _attempt("flash-b", "fallback", AttemptOutcome.SUCCEEDED, 12.0, 0.00004),
        _attempt("mid", "tier", AttemptOutcome.REJECTED, 50.0, 0.0002),  # answered: counts
    ]
    for _ in range(3):
        observed.observe_answers("chat", attempts, {"flash", "flash-b", "mid"})
    assert observed.latency.rates() == pytest.approx({"flash-b/chat": 12.0, "mid/chat": 50.0})
    assert observed.cost.rates() == pytest.approx({"flash-b/chat": 0.00004, "mid/chat": 0.0002})


def test_config_keys() -> None:
    data = sim_config()
    data["routing"]["performance"] = {"smoothing": 0.2, "latency_cost_min_samples": 2}
    observed = build_observed(parse_config(data))
    assert isinstance(observed.latency, LocalWindows)
    assert (observed.latency.smoothing, observed.latency.min_samples) == (0.2, 2)
    assert observed.latency.window == smoothed_window(0.2, 2, 200)
    for bad in ({"smoothing": 0}, {"smoothing": 1.5}, {"latency_cost_min_samples": 0}):
        data["routing"]["performance"] = bad
        with pytest.raises(ConfigError) as info:
            parse_config(data)
        assert f"routing.performance.{next(iter(bad))}" in info.value.problems[0]


def test_an_exploring_plan_shows_the_draws_that_ordered_it() -> None:
    from quorum.server.performance import figures

    snapshot = _snapshot(latency={"flash": 400.0, "flash-b": 3.0})
    ordered, explored = rank(
        CHEAP, "chat", snapshot, PerformancePolicy(explore_share=1.0), "x-1", costs=COSTS
    )
    assert explored
    for e in ordered:
        assert f"(drawn {e.score:.2f})" in figures(e)
    steady, _ = rank(CHEAP, "chat", snapshot, POLICY, "x-1", costs=COSTS)
    assert not any("drawn" in figures(e) for e in steady)
