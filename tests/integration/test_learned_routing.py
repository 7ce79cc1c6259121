"""The learned router in the request path: difficulty from real-data scores, a learned gate."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from quorum.route.v1 import types_pb2 as pb
from quorum.server.classify.learned import difficulty_from_scores
from quorum.server.config import parse_config
from quorum.server.domain import Difficulty
from tests.conftest import running_server, sim_config


@pytest.mark.parametrize(
    ("recommended", "expected"),
    [("a", Difficulty.LOW), ("b", Difficulty.MEDIUM), ("c", Difficulty.HIGH)],
)
def test_recommendation_position_is_difficulty(recommended: str, expected: Difficulty) -> None:
    assert difficulty_from_scores(("a", "b", "c"), recommended) is expected


async def test_learned_router_sets_difficulty_and_explains() -> None:
    data = sim_config(classifier={"learned": {"source": "routellm-mmlu"}})
    async with running_server(parse_config(data)) as (_, client):
        planned = await client.plan(
            "Which of the following is a prime number?\nA. 21\nB. 27\nC. 29\nD. 33\nAnswer:"
        )
    c = planned.classification
    assert c.classifier.endswith("+learned")
    assert any(s.startswith("learned:routellm-mmlu:gain=") for s in c.signals)
    assert c.difficulty in (pb.DIFFICULTY_LOW, pb.DIFFICULTY_HIGH)


async def _cascade_with_the_verifier(prompt: str) -> pb.RouteResponse:
    data = sim_config(
        classifier={"learned": {"source": "routellm-gsm8k", "difficulty": False, "verifier": True}}
    )
    async with running_server(parse_config(data)) as (_, client):
        return await client.route(prompt, hints=pb.RoutingHints(strategy=pb.STRATEGY_CASCADE))


async def test_learned_verifier_joins_the_cascade_gate() -> None:
    r = await _cascade_with_the_verifier(
        "Natalia sold clips to 48 of her friends in April, and then she sold half as many "
        "clips in May. How many clips did Natalia sell altogether in April and May?"
    )
    gated = [a for a in r.attempts if a.HasField("gate")]
    assert gated
    names = [c.name for c in gated[0].gate.checks]
    assert "learned_verifier" in names


@pytest.mark.parametrize(
    ("learned", "problem"),
    [
        (
            {"artifact": "/nonexistent/router"},
            "classifier.learned.artifact: /nonexistent/router/manifest.json: no router manifest",
        ),
        (
            {"source": "no-such-source"},
            'classifier.learned.source: unknown source "no-such-source" (the artifact has: ',
        ),
        (
            {"source": "no-such-source", "verifier": True},
            'classifier.learned.source: unknown source "no-such-source"',
        ),
        (
            {"source": "no-such-source", "difficulty": False},
            'classifier.learned.source: unknown source "no-such-source"',
        ),
        (
            {"verifier": True},
            "classifier.learned.verifier: source 'routellm-mmlu' has no cascade verifier",
        ),
    ],
)
def test_a_learned_setup_serve_cannot_build_is_refused_at_start_up(
    learned: dict[str, object], problem: str
) -> None:
    from quorum.server.classify.build import check_learned
    from quorum.server.errors import ConfigError
    from quorum.server.router import Router

    config = parse_config(sim_config(classifier={"learned": learned}))
    for build in (check_learned, Router):  # what check-config checks is what serve builds
        with pytest.raises(ConfigError) as info:
            build(config)
        assert len(info.value.problems) == 1
        assert info.value.problems[0].startswith(problem), info.value.problems


def test_unknown_source_lists_the_sources_the_artifact_has() -> None:
    from quorum.server.classify.build import check_learned
    from quorum.server.errors import ConfigError
    from quorum.server.learned import DEFAULT_ARTIFACT, LearnedRouter

    config = parse_config(sim_config(classifier={"learned": {"source": "routellm-mmlo"}}))
    with pytest.raises(ConfigError) as info:
        check_learned(config)
    (problem,) = info.value.problems
    for source in LearnedRouter.load(DEFAULT_ARTIFACT).sources:
        assert source in problem


def test_a_damaged_artifact_is_named_not_raised(tmp_path: Path) -> None:
    from quorum.server.classify.build import check_learned
    from quorum.server.errors import ConfigError
    from quorum.server.learned import DEFAULT_ARTIFACT

    shutil.copy(Path(DEFAULT_ARTIFACT) / "manifest.json", tmp_path / "manifest.json")
    (tmp_path / "weights.npz").write_bytes(b"not a zip archive")
    config = parse_config(sim_config(classifier={"learned": {"artifact": str(tmp_path)}}))
    with pytest.raises(ConfigError) as info:
        check_learned(config)
    (problem,) = info.value.problems
    assert problem.startswith(f"classifier.learned.artifact: {tmp_path}: not a usable router")


async def test_the_learned_verifier_never_judges_the_last_tier() -> None:
    r = await _cascade_with_the_verifier(
        "A train leaves at 3pm going 60 mph; another leaves at 4pm at 80 mph. When does "
        "the second catch up, and how far from the station are they?"
    )
    gated = [a for a in r.attempts if a.HasField("gate")]
    assert len(gated) >= 2, [(a.model, a.outcome) for a in r.attempts]
    assert "learned_verifier" in [c.name for c in gated[0].gate.checks]
    last = gated[-1]
    assert last.tier == "premium"
    assert "learned_verifier" not in [c.name for c in last.gate.checks]
