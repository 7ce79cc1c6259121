"""Performance-based ordering: observed quality first, priors cold, Thompson exploration."""

from __future__ import annotations

from quorum.server.catalog import build_catalog
from quorum.server.config import parse_config
from quorum.server.domain import Classification, Difficulty, Hints, Message, Role, RouteRequest
from quorum.server.performance import PerformancePolicy, explores, rank
from quorum.server.plan import plan
from quorum.server.policy import build_policy
from quorum.server.state import StateSnapshot, accuracy_key
from tests.conftest import sim_config

CONFIG = parse_config(sim_config())
CATALOG = build_catalog(CONFIG)
CHEAP = [CATALOG.models["flash"], CATALOG.models["flash-b"]]


def test_cold_start_uses_priors_then_price() -> None:
    estimates, explored = rank(
        CHEAP, "chat", StateSnapshot(), PerformancePolicy(explore_share=0.0), "r"
    )
    assert not explored
    assert [e.model for e in estimates] == ["flash", "flash-b"]  # equal priors: stable order
    assert all(not e.observed for e in estimates)


def test_observed_quality_reorders_a_tier() -> None:
    snapshot = StateSnapshot(
        model_quality={accuracy_key("flash", "code"): 0.6, accuracy_key("flash-b", "code"): 0.9}
    )
    estimates, _ = rank(CHEAP, "code", snapshot, PerformancePolicy(explore_share=0.0), "r")
    assert [e.model for e in estimates] == ["flash-b", "flash"]
    # Another task has no observations: priors apply.
    other, _ = rank(CHEAP, "chat", snapshot, PerformancePolicy(explore_share=0.0), "r")
    assert [e.observed for e in other] == [False, False]


def test_exploration_is_a_deterministic_share() -> None:
    ids = [f"req-{i}" for i in range(2000)]
    share = sum(explores(i, 0.1) for i in ids) / len(ids)
    assert 0.07 < share < 0.13
    snapshot = StateSnapshot(
        model_quality={accuracy_key("flash", "chat"): 0.8, accuracy_key("flash-b", "chat"): 0.78}
    )
    policy = PerformancePolicy(explore_share=1.0)
    firsts = {rank(CHEAP, "chat", snapshot, policy, i)[0][0].model for i in ids[:200]}
    assert firsts == {"flash", "flash-b"}  # close estimates: both get traffic
    again = [rank(CHEAP, "chat", snapshot, policy, i)[0][0].model for i in ids[:50]]
    assert again == [rank(CHEAP, "chat", snapshot, policy, i)[0][0].model for i in ids[:50]]


def test_plan_shows_the_figures_it_used() -> None:
    request = RouteRequest("r1", (Message(Role.USER, "hi"),), hints=Hints())
    cls = Classification("chat", Difficulty.LOW, 0.9, "rules")
    snapshot = StateSnapshot(model_quality={accuracy_key("flash-b", "chat"): 0.95})
    decided = plan(request, cls, CATALOG, build_policy(CONFIG), snapshot)
    assert decided.candidates[0].model == "flash-b"
    (reason,) = [r for r in decided.reasons if r.code == "PERFORMANCE"]
    assert "flash-b 0.95" in reason.message
    assert "flash 0.75 (prior)" in reason.message
