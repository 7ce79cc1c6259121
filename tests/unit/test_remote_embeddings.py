"""Remote embeddings without a network: the config keys, reading an embeddings answer, and
the chain going on without the embedding step when the encoder fails for a request."""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from quorum.server.classify.chain import UNKNOWN_CONFIDENCE, ChainClassifier
from quorum.server.classify.embedding import (
    UNAVAILABLE_SIGNAL,
    Array,
    EmbeddingUnavailable,
    FallbackChain,
    SemanticRoutes,
)
from quorum.server.config import parse_config
from quorum.server.domain import Classification, Difficulty, Message, Role, RouteRequest
from quorum.server.errors import ConfigError, ProviderBadResponse
from quorum.server.providers.embeddings_http import read_embeddings
from tests.conftest import sim_config

# ---- config ------------------------------------------------------------------------------


def _data(**remote: Any) -> dict[str, Any]:
    data = sim_config(classifier={"embedding": {"tasks": {"legal": ["Is this NDA enforceable?"]}}})
    data["providers"]["oai"] = {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}
    data["classifier"]["embedding"]["remote"] = remote
    return data


def _problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return list(info.value.problems)


def test_remote_keys_and_their_defaults() -> None:
    config = parse_config(_data(provider="oai", model="text-embedding-3-small"))
    remote = config.classifier.embedding.remote
    assert remote is not None
    assert (remote.provider, remote.model) == ("oai", "text-embedding-3-small")
    assert (remote.timeout_s, remote.dimensions) == (0.3, None)
    assert parse_config(sim_config()).classifier.embedding.remote is None  # MiniLM


def test_unknown_provider_is_named_with_a_suggestion() -> None:
    (problem,) = _problems(_data(provider="oia", model="m"))
    assert problem.startswith('classifier.embedding.remote.provider: unknown provider "oia"')
    assert 'did you mean "oai"?' in problem


def test_a_provider_that_is_not_openai_compatible_is_refused() -> None:
    (problem,) = _problems(_data(provider="sim", model="m"))
    assert problem.startswith("classifier.embedding.remote.provider: ")
    assert "kind 'simulated'" in problem and "kind 'openai': oai" in problem


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ({"provider": "oai", "model": "m", "colour": 1}, "classifier.embedding.remote.colour"),
        ({"provider": "oai"}, "classifier.embedding.remote.model"),
        ({"model": "m"}, "classifier.embedding.remote.provider"),
        (
            {"provider": "oai", "model": "m", "timeout_s": 0},
            "classifier.embedding.remote.timeout_s",
        ),
        (
            {"provider": "oai", "model": "m", "dimensions": 0},
            "classifier.embedding.remote.dimensions",
        ),
    ],
)
def test_bad_remote_keys_are_named(remote: dict[str, Any], expected: str) -> None:
    (problem,) = _problems(_data(**remote))
    assert problem.startswith(expected + ":")


# ---- reading an answer -------------------------------------------------------------------


def _item(index: int, embedding: Any) -> dict[str, Any]:
    return {"object": "embedding", "index": index, "embedding": embedding}


def test_vectors_come_back_in_input_order_and_of_unit_length() -> None:
    answer = {
        "object": "list",
        "data": [_item(1, [0.0, 2.0]), _item(0, [3.0, 4.0])],  # out of order, not unit
        "model": "m",
        "usage": {"prompt_tokens": 7, "total_tokens": 7},
    }
    vectors, tokens = read_embeddings("emb", answer, 2)
    assert np.allclose(vectors, [[0.6, 0.8], [0.0, 1.0]])
    assert vectors.dtype == np.float32
    assert tokens == 7


def test_base64_vectors_are_read_and_usage_may_be_missing() -> None:
    packed = base64.b64encode(struct.pack("<3f", 1.0, 0.0, 0.0)).decode()
    vectors, tokens = read_embeddings("emb", {"data": [_item(0, packed)]}, 1)
    assert np.allclose(vectors, [[1.0, 0.0, 0.0]])
    assert tokens is None


def test_a_zero_vector_stays_zero() -> None:
    vectors, _ = read_embeddings("emb", {"data": [_item(0, [0.0, 0.0])]}, 1)
    assert np.array_equal(vectors, [[0.0, 0.0]])


@pytest.mark.parametrize(
    "answer",
    [
        {"data": [_item(0, [1.0])]},  # one vector for two inputs
        {"data": [_item(0, [1.0]), _item(0, [1.0])]},  # the same index twice
        {"data": [_item(0, [1.0]), _item(5, [1.0])]},  # an index out of range
        {"data": [_item(0, [1.0]), _item(1, [1.0, 0.0])]},  # lengths differ
        {"data": [_item(0, [1.0]), _item(1, ["x"])]},  # not numbers
        {"data": [_item(0, [1.0]), _item(1, [float("nan")])]},  # not finite
        {"data": [_item(0, []), _item(1, [])]},  # empty vectors
        {"data": [_item(0, [1.0]), _item(1, "not base64!")]},
        {"object": "list"},  # no data
        ["not", "an", "object"],
    ],
)
def test_anything_but_the_documented_shape_is_a_bad_response(answer: Any) -> None:
    with pytest.raises(ProviderBadResponse, match="unexpected embeddings shape"):
        read_embeddings("emb", answer, 2)


# ---- the chain when the encoder fails ----------------------------------------------------

_AXES = ("contract", "nda", "clause", "invoice", "refund")
UNSURE_FOR_RULES = "Blorp the frobnicator quickly."  # rules: chat at 0.55


class FlakyEncoder:
    """Keyword axes; embeds the examples at start-up, then fails while ``failing``."""

    def __init__(self) -> None:
        self.failing = False
        self.calls = 0

    def encode(self, texts: Sequence[str]) -> Array:
        rows = [[float(w in t.lower()) for w in _AXES] + [0.1] for t in texts]
        matrix = np.asarray(rows, dtype=np.float32)
        unit: Array = np.asarray(matrix / np.linalg.norm(matrix, axis=1, keepdims=True))
        return unit

    async def aencode(self, texts: Sequence[str]) -> Array:
        self.calls += 1
        if self.failing:
            raise EmbeddingUnavailable("emb: HTTP 500")
        return self.encode(texts)


class Answers:
    """A stand-in LLM classifier with a fixed answer; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def classify(self, request: RouteRequest) -> Classification:
        self.calls += 1
        return Classification("legal", Difficulty.HIGH, 0.9, classifier="llm")


def _request(text: str) -> RouteRequest:
    return RouteRequest("r", (Message(Role.USER, text),))


def _routes(encoder: FlakyEncoder) -> tuple[SemanticRoutes, SemanticRoutes]:
    tasks = SemanticRoutes(encoder, {"legal": ["Review this contract clause", "Is this NDA ok"]})
    agents = SemanticRoutes(encoder, {"billing": ["Refund my invoice", "Invoice refund please"]})
    return tasks, agents


async def test_while_the_encoder_works_the_chain_is_unchanged() -> None:
    encoder = FlakyEncoder()
    tasks, agents = _routes(encoder)
    result = await FallbackChain(tasks=tasks, agents=agents).classify(
        _request("Please refund this invoice")
    )
    assert result.agent == "billing"
    assert UNAVAILABLE_SIGNAL not in result.signals


async def test_a_failing_encoder_leaves_the_first_steps_answer() -> None:
    encoder = FlakyEncoder()
    tasks, agents = _routes(encoder)
    encoder.failing = True
    plain = await ChainClassifier().classify(_request(UNSURE_FOR_RULES))
    result = await FallbackChain(tasks=tasks, agents=agents).classify(_request(UNSURE_FOR_RULES))
    # Unsure, not "unknown": no drop to UNKNOWN_CONFIDENCE, so no move a tier up.
    assert (result.task, result.confidence, result.agent) == (plain.task, plain.confidence, "")
    assert result.confidence > UNKNOWN_CONFIDENCE
    assert result.classifier == "rules"
    assert result.signals == (*plain.signals, UNAVAILABLE_SIGNAL)
    assert not any(s.startswith(("semantic_task:", "agent:")) for s in result.signals)


async def test_the_llm_decides_when_the_embedding_step_is_unavailable() -> None:
    encoder = FlakyEncoder()
    tasks, _ = _routes(encoder)
    encoder.failing = True
    llm = Answers()
    result = await FallbackChain(tasks=tasks, llm=llm).classify(_request(UNSURE_FOR_RULES))
    assert llm.calls == 1  # asked once: the failure came before the LLM
    assert (result.task, result.classifier) == ("legal", "llm")
    assert UNAVAILABLE_SIGNAL in result.signals


async def test_plan_classifier_keeps_the_fallback_and_calls_no_llm() -> None:
    encoder = FlakyEncoder()
    tasks, agents = _routes(encoder)
    llm = Answers()
    planning = FallbackChain(tasks=tasks, agents=agents, llm=llm).without_llm()
    assert isinstance(planning, FallbackChain)
    assert (await planning.classify(_request("Refund my invoice"))).agent == "billing"
    encoder.failing = True
    result = await planning.classify(_request(UNSURE_FOR_RULES))
    assert UNAVAILABLE_SIGNAL in result.signals
    assert llm.calls == 0


async def test_the_plain_chain_would_fail_the_request() -> None:
    """Why the remote encoder gets a FallbackChain: the plain chain lets the error out."""
    encoder = FlakyEncoder()
    tasks, _ = _routes(encoder)
    encoder.failing = True
    with pytest.raises(EmbeddingUnavailable):
        await ChainClassifier(tasks=tasks).classify(_request(UNSURE_FOR_RULES))
