"""The LLM classifier: strict parsing, timeout → medium, malformed → rules."""

from __future__ import annotations

import asyncio

import pytest

from quorum.server.classify.chain import ChainClassifier
from quorum.server.classify.llm import LLMClassifier, parse_classification
from quorum.server.domain import Classification, Difficulty, Message, Role, RouteRequest
from quorum.server.errors import ProviderTimeout, ProviderUnavailable

TASKS = ("chat", "code", "math")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"task": "code", "difficulty": "high", "confidence": 0.8}', ("code", Difficulty.HIGH)),
        ('{"task": "math", "difficulty": "low", "confidence": 1}', ("math", Difficulty.LOW)),
        ('{"task": "code", "difficulty": "hard", "confidence": 0.8}', None),
        ('{"task": "poetry", "difficulty": "low", "confidence": 0.8}', None),
        ('{"task": "code", "difficulty": "low", "confidence": 1.5}', None),
        ('{"task": "code", "difficulty": "low", "confidence": true}', None),
        ('{"task": "code", "difficulty": "low"}', None),
        ('{"task": "code", "difficulty": "low", "confidence": 0.5, "x": 1}', None),
        ('Sure! {"task": "code", "difficulty": "low", "confidence": 0.5}', None),
        ("[]", None),
    ],
)
def test_parse_is_strict(text: str, expected: tuple[str, Difficulty] | None) -> None:
    parsed = parse_classification(text, TASKS)
    if expected is None:
        assert parsed is None
    else:
        assert parsed is not None
        assert (parsed.task, parsed.difficulty, parsed.classifier) == (*expected, "llm")


def _request(text: str = "What is 2+2?") -> RouteRequest:
    return RouteRequest("r", (Message(Role.USER, text),))


async def test_answer_is_used() -> None:
    async def call(messages: tuple[Message, ...], timeout: float) -> str:
        assert messages[0].role is Role.SYSTEM
        assert "difficulty" in messages[0].content
        return '{"task": "math", "difficulty": "high", "confidence": 0.9}'

    result = await LLMClassifier(call, tasks=TASKS).classify(_request())
    assert (result.task, result.difficulty, result.classifier) == ("math", Difficulty.HIGH, "llm")


async def test_the_providers_own_timeout_is_a_timeout_too() -> None:
    # The provider is given the same limit: its timer may fire before ours.
    async def times_out(messages: tuple[Message, ...], timeout: float) -> str:
        raise ProviderTimeout("p: no answer in time", provider="p")

    result = await LLMClassifier(times_out, tasks=TASKS).classify(_request("hi"))
    assert result.classifier == "llm-timeout"
    assert result.difficulty is Difficulty.MEDIUM


async def test_timeout_falls_back_to_medium() -> None:
    async def slow(messages: tuple[Message, ...], timeout: float) -> str:
        await asyncio.sleep(1)
        return "{}"

    result = await LLMClassifier(slow, tasks=TASKS, timeout_s=0.02).classify(_request("hi"))
    assert (result.difficulty, result.classifier) == (Difficulty.MEDIUM, "llm-timeout")
    assert result.signals[-1] == "timeout_difficulty:low->medium"


async def test_timeout_never_lowers_the_rules_difficulty() -> None:
    async def slow(messages: tuple[Message, ...], timeout: float) -> str:
        await asyncio.sleep(1)
        return "{}"

    hard = _request("Prove it step by step.")  # high by the rules
    result = await LLMClassifier(slow, tasks=TASKS, timeout_s=0.02).classify(hard)
    assert (result.difficulty, result.classifier) == (Difficulty.HIGH, "llm-timeout")
    assert result.signals[-1] == "timeout_difficulty:high->high"


async def test_malformed_keeps_rules_answer() -> None:
    async def chatty(messages: tuple[Message, ...], timeout: float) -> str:
        return "I think this is math."

    result = await LLMClassifier(chatty, tasks=TASKS).classify(_request())
    assert (result.task, result.difficulty, result.classifier) == (
        "math",
        Difficulty.LOW,
        "llm-malformed",
    )


async def test_provider_error_keeps_rules_answer() -> None:
    async def down(messages: tuple[Message, ...], timeout: float) -> str:
        raise ProviderUnavailable("p: 503", provider="p")

    result = await LLMClassifier(down, tasks=TASKS).classify(_request())
    assert result.classifier == "llm-error"


async def test_a_request_the_model_may_not_read_never_reaches_it() -> None:
    # Restricted data, or a model outside the tenant's: the rules answer, no call.
    calls: list[tuple[Message, ...]] = []

    async def call(messages: tuple[Message, ...], timeout: float) -> str:
        calls.append(messages)
        return '{"task": "math", "difficulty": "high", "confidence": 0.9}'

    withheld = LLMClassifier(call, tasks=TASKS, may_see=lambda request: False)
    result = await withheld.classify(_request("Patient 4711: what is 2+2?"))
    assert calls == [] and result.classifier == "rules"
    allowed = LLMClassifier(call, tasks=TASKS, may_see=lambda request: True)
    assert (await allowed.classify(_request())).classifier == "llm" and len(calls) == 1


async def test_a_chain_for_plan_never_calls_the_model() -> None:
    calls: list[str] = []

    class Counting:
        async def classify(self, request: RouteRequest) -> Classification:
            calls.append(request.request_id)
            return Classification("math", Difficulty.HIGH, 0.9, "llm")

    chain = ChainClassifier(llm=Counting(), confident_at=1.01)  # always unsure
    assert (await chain.classify(_request())).classifier == "llm"
    assert (await chain.without_llm().classify(_request())).classifier == "rules"
    assert calls == ["r"]
