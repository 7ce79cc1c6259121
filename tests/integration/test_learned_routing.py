"""The learned router in the request path: difficulty from real-data scores, a learned gate."""

from __future__ import annotations

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


async def test_learned_verifier_joins_the_cascade_gate() -> None:
    data = sim_config(
        classifier={"learned": {"source": "routellm-gsm8k", "difficulty": False, "verifier": True}}
    )
    async with running_server(parse_config(data)) as (_, client):
        r = await client.route(
            "Natalia sold clips to 48 of her friends in April, and then she sold half as many "
            "clips in May. How many clips did Natalia sell altogether in April and May?",
            hints=pb.RoutingHints(strategy=pb.STRATEGY_CASCADE),
        )
    gated = [a for a in r.attempts if a.HasField("gate")]
    assert gated
    names = [c.name for c in gated[0].gate.checks]
    assert "learned_verifier" in names
