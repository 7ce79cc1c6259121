"""``routing.cascade``, ``routing.consensus`` and ``routing.performance``: one test per bad
shape, each naming its key."""

from __future__ import annotations

from typing import Any

import pytest

from quorum.server.config import parse_config
from quorum.server.domain import Strategy
from quorum.server.errors import ConfigError
from quorum.server.execute.gate import DEFAULT_REFUSAL_PHRASES
from quorum.server.policy import build_policy
from tests.conftest import sim_config


def _with(section: str, **values: Any) -> dict[str, Any]:
    data = sim_config()
    data["routing"][section] = values
    return data


def _problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return list(info.value.problems)


@pytest.mark.parametrize(
    ("section", "values", "problem"),
    [
        ("cascade", {"tiers": ["cheap", "gold"]}, 'routing.cascade.tiers[1]: unknown tier "gold"'),
        ("cascade", {"tiers": ["mid", "cheap"]}, "routing.cascade.tiers: list each tier once"),
        ("cascade", {"tiers": ["cheap", "cheap"]}, "routing.cascade.tiers: list each tier once"),
        ("cascade", {"window": 10, "min_samples": 20}, "routing.cascade.min_samples: 20 exceeds"),
        ("cascade", {"escalation_threshold": 1.5}, "routing.cascade.escalation_threshold:"),
        (
            "performance",
            {"window": 10, "min_samples": 50},
            "routing.performance.min_samples: 50 exceeds window 10",
        ),
        ("cascade", {"gate": {"min_mean_logprob": 0.5}}, "routing.cascade.gate.min_mean_logprob:"),
        ("cascade", {"gate": {"refusals": []}}, "routing.cascade.gate.refusals: unknown key"),
        (
            "consensus",
            {"judge_model": "gpt-9"},
            'routing.consensus.judge_model: unknown model "gpt-9"',
        ),
        (
            "consensus",
            {"models": ["flash", "flsh"]},
            'routing.consensus.models[1]: unknown model "flsh"',
        ),
        ("consensus", {"size": 6, "max_size": 4}, "routing.consensus.size: 6 exceeds max_size 4"),
        ("consensus", {"size": 1}, "routing.consensus.size:"),
        ("consensus", {"normalizer": "fuzzy"}, "routing.consensus.normalizer:"),
        ("consensus", {"tie_break": "coin"}, "routing.consensus.tie_break:"),
        ("consensus", {"voters": 3}, "routing.consensus.voters: unknown key"),
        (
            "consensus",
            {"accuracy_window": 5, "accuracy_min_samples": 9},
            "routing.consensus.accuracy_min_samples: 9 exceeds accuracy_window 5",
        ),
    ],
)
def test_bad_shape_names_its_key(section: str, values: dict[str, Any], problem: str) -> None:
    problems = _problems(_with(section, **values))
    assert any(p.startswith(problem) for p in problems), problems


def test_performance_min_samples_may_equal_the_window() -> None:
    config = parse_config(_with("performance", window=20, min_samples=20))
    assert config.routing.performance.min_samples == 20


def test_unknown_judge_suggests_a_name() -> None:
    (problem,) = _problems(_with("consensus", judge_model="frontir"))
    assert 'did you mean "frontier"' in problem


def test_consensus_larger_than_the_call_cap() -> None:
    data = _with("consensus", size=4)
    data["routing"]["max_upstream_calls"] = 3
    assert _problems(data) == ["routing.consensus.size: 4 exceeds routing.max_upstream_calls 3"]


def test_defaults_compile_into_the_policy() -> None:
    policy = build_policy(parse_config(sim_config()))
    assert policy.cascade.escalation_threshold == 0.40
    assert policy.cascade.gate.refusal_phrases == DEFAULT_REFUSAL_PHRASES
    assert policy.consensus.size == 3
    assert policy.consensus.auto_mode is Strategy.CONSENSUS_MAJORITY


def test_settings_compile_into_the_policy() -> None:
    data = _with("consensus", auto_mode="judge", judge_model="mid", tie_break="judge")
    data["routing"]["cascade"] = {
        "tiers": ["cheap", "premium"],
        "probe_share": 0.2,
        "gate": {"refusal_phrases": ["nope"], "extra_refusal_phrases": ["nah"]},
    }
    policy = build_policy(parse_config(data))
    assert policy.cascade.tiers == ("cheap", "premium")
    assert policy.cascade.probe_share == 0.2
    assert policy.cascade.gate.refusal_phrases == ("nope", "nah")
    assert policy.consensus.auto_mode is Strategy.CONSENSUS_JUDGE
    assert (policy.consensus.judge_model, policy.consensus.tie_break) == ("mid", "judge")
