"""Semantic routes on a remote embeddings endpoint, through a real server.

The endpoint is the fake OpenAI server on its own thread (the server embeds the examples
synchronously as it starts). Its vectors are bags of words, so prompts sharing words with
an agent's examples are close to them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from quorum.server.classify.embedding import UNAVAILABLE_SIGNAL, FallbackChain
from quorum.server.config import parse_config
from quorum.server.errors import ConfigError
from quorum.server.router import Router
from tests.conftest import running_server, sim_config
from tests.fakes import openai_server
from tests.fakes.common import Behaviour, Running

BILLING = "Please refund the invoice my card was charged for"
TRAVEL = "Book a cheap flight to Paris"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Running]:
    monkeypatch.setenv("QUORUM_TEST_EMBEDDINGS_KEY", "sk-embeddings")
    with openai_server.serve_in_thread() as running:
        yield running


def remote_config(fake: Running, **remote: Any) -> dict[str, Any]:
    data = sim_config(
        agents={
            "billing": {
                "examples": [
                    "Refund my last invoice",
                    "Why was my card charged twice",
                    "Update the billing address on my invoice",
                ],
                "models": {"cheap": "flash-b"},
            },
            "travel": {
                "examples": [
                    "Book a flight to Paris next week",
                    "Find a hotel near the airport",
                    "Change my flight booking",
                ],
            },
        },
        classifier={
            "embedding": {
                "remote": {"provider": "embeddings", "model": "text-embedding-3-small", **remote}
            }
        },
    )
    data["providers"]["embeddings"] = {
        "kind": "openai",
        "base_url": fake.base_url,
        "api_key_env": "QUORUM_TEST_EMBEDDINGS_KEY",
    }
    return data


async def test_the_remote_encoder_picks_the_agent(fake: Running) -> None:
    config = parse_config(remote_config(fake))
    async with running_server(config) as (running, client):
        assert fake.server.stats.requests == 1  # the six examples, in one batch
        billing = await client.route(BILLING)
        travel = await client.route(TRAVEL)
        other = await client.route("What is 17 * 23?")
        plan = await client.plan(TRAVEL)  # from the cache: no call
        assert fake.server.stats.requests == 4
        assert isinstance(running.router.classifier, FallbackChain)
    assert billing.classification.agent == "billing"
    assert billing.model == "flash-b"  # the agent's cheap model
    assert travel.classification.agent == "travel"
    assert other.classification.agent == ""
    assert plan.classification.agent == "travel"
    for response in (billing, travel, other):
        assert UNAVAILABLE_SIGNAL not in response.classification.signals
    # The prompt went to the endpoint as the input, with the provider's key.
    assert fake.server.stats.last_body == {
        "model": "text-embedding-3-small",
        "input": ["What is 17 * 23?"],
    }


@pytest.mark.parametrize("failure", ["error-500", "bad-key", "ratelimit-5", "slow-2000", "drop"])
async def test_requests_succeed_while_the_endpoint_fails(fake: Running, failure: str) -> None:
    config = parse_config(remote_config(fake, timeout_s=0.2))
    async with running_server(config) as (_, client):
        fake.server.script.extend([Behaviour.parse(failure)] * 3)
        answers = [await client.route(f"{BILLING}, order {i}") for i in range(3)]
    for answer in answers:
        assert answer.content
        assert answer.classification.agent == ""  # no agent: the step was unsure
        assert answer.classification.confidence > 0  # not "unknown": no move a tier up
        assert UNAVAILABLE_SIGNAL in answer.classification.signals
        assert "AMBIGUOUS_UP" not in [r.code for r in answer.plan.reasons]


async def test_the_server_refuses_to_start_when_the_examples_cannot_be_embedded(
    fake: Running,
) -> None:
    config = parse_config(remote_config(fake))
    fake.server.script.append(Behaviour.parse("bad-key"))
    with pytest.raises(ConfigError) as info:
        Router(config)
    (problem,) = info.value.problems
    assert problem.startswith("classifier.embedding.remote: could not embed 6 example utterances")
    assert "HTTP 401: Incorrect API key provided" in problem
    assert "sk-embeddings" not in problem
