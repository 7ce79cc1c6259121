"""The simulated provider stops at ``max_tokens`` as a real model does: the answer is cut
to fit (as its own token count counts it), the finish reason is ``length`` and usage
counts what was returned, unary or streamed. Budget reservations rest on max_tokens."""

from __future__ import annotations

import random

import pytest

from quorum.server.config import SimulatedBehaviour
from quorum.server.domain import (
    Completion,
    GenerationParams,
    Message,
    ResponseFormat,
    ResponseFormatType,
    Role,
    Tool,
    ToolChoice,
    ToolChoiceMode,
)
from quorum.server.execute.judge import MARKER
from quorum.server.providers.base import ProviderRequest, StreamDelta, checked_completion
from quorum.server.providers.simulated import SimulatedProvider
from quorum.server.tokens import count_tokens

_LONG = "Prove rigorously the theorem and derive the complexity, step by step"
_SUM = "What is 17 * 23?"
_BEHAVIOUR = SimulatedBehaviour(
    latency_ms_p50=0, latency_ms_p95=0, ms_per_output_token=0, output_tokens=80
)


def _provider() -> SimulatedProvider:
    return SimulatedProvider("sim", {"m": _BEHAVIOUR}, rng=random.Random(7))


def _request(prompt: str, params: GenerationParams, system: str = "") -> ProviderRequest:
    messages = (Message(Role.SYSTEM, system),) if system else ()
    return ProviderRequest("m", (*messages, Message(Role.USER, prompt)), params, 5.0)


async def _both(request: ProviderRequest) -> tuple[Completion, list[StreamDelta]]:
    provider = _provider()
    completion = await provider.complete(request)
    deltas = [delta async for delta in provider.stream(request)]
    return completion, deltas


def _full(request: ProviderRequest) -> ProviderRequest:
    return ProviderRequest(
        request.model_id,
        request.messages,
        GenerationParams(response_format=request.params.response_format),
        request.timeout_s,
    )


@pytest.mark.parametrize("fmt", [ResponseFormatType.TEXT, ResponseFormatType.JSON_OBJECT])
@pytest.mark.parametrize("prompt", [_LONG, _SUM])
@pytest.mark.parametrize("max_tokens", [1, 2, 3, 10, 30, 100])
async def test_an_answer_never_has_more_output_tokens_than_max_tokens(
    max_tokens: int, prompt: str, fmt: ResponseFormatType
) -> None:
    params = GenerationParams(max_tokens=max_tokens, response_format=ResponseFormat(fmt))
    request = _request(prompt, params)
    completion, deltas = await _both(request)
    whole = await _provider().complete(_full(request))
    cut = count_tokens(whole.content) > max_tokens

    assert completion.usage.output_tokens <= max_tokens
    assert completion.usage.output_tokens == count_tokens(completion.content)
    assert whole.content.startswith(completion.content)
    assert completion.finish_reason == ("length" if cut else "stop")
    assert (completion.content == whole.content) is not cut
    # The stream says the same: its pieces add up to the cut text, its usage matches.
    assert "".join(d.text for d in deltas) == completion.content
    assert deltas[-1].finish_reason == completion.finish_reason
    assert deltas[-1].usage == completion.usage


async def test_the_reviewers_long_answers_are_cut_with_finish_length() -> None:
    # Before: 13/13/36/115 output tokens for max_tokens 1/10/30/100, finish "stop".
    for max_tokens in (1, 10, 30, 100):
        request = _request(_LONG, GenerationParams(max_tokens=max_tokens))
        completion, _ = await _both(request)
        assert completion.finish_reason == "length"
        assert 0 < completion.usage.output_tokens <= max_tokens


async def test_a_cut_text_ends_at_a_word_when_one_ends_in_it() -> None:
    completion, _ = await _both(_request(_SUM, GenerationParams(max_tokens=3)))
    assert completion.content == "The answer"  # not "The answer i"
    assert completion.finish_reason == "length"
    first, _ = await _both(_request(_SUM, GenerationParams(max_tokens=1)))
    assert (first.content, first.usage.output_tokens) == ("The", 1)


async def test_an_answer_that_fits_is_unchanged() -> None:
    completion, deltas = await _both(_request(_SUM, GenerationParams(max_tokens=5)))
    assert (completion.content, completion.finish_reason) == ("The answer is 391.", "stop")
    assert completion.usage.output_tokens == 5
    assert deltas[-1].finish_reason == "stop"


async def test_without_max_tokens_nothing_is_cut() -> None:
    completion, _ = await _both(_request(_LONG, GenerationParams()))
    assert completion.finish_reason == "stop"
    assert completion.usage.output_tokens > 100


async def test_a_judges_answer_is_cut_too() -> None:
    request = _request("question", GenerationParams(max_tokens=2), system=MARKER)
    completion, deltas = await _both(request)
    assert completion.finish_reason == "length"
    assert completion.usage.output_tokens <= 2
    assert "".join(d.text for d in deltas) == completion.content


def _tool_params(max_tokens: int) -> GenerationParams:
    return GenerationParams(
        max_tokens=max_tokens,
        tools=(Tool("get_weather", parameters_json='{"type": "object"}'),),
        tool_choice=ToolChoice(ToolChoiceMode.REQUIRED),
    )


@pytest.mark.parametrize("max_tokens", [1, 7])
async def test_a_tool_call_that_does_not_fit_is_cut_as_the_openai_adapter_reads_one(
    max_tokens: int,
) -> None:
    completion, deltas = await _both(_request("Weather in Paris?", _tool_params(max_tokens)))
    assert completion.finish_reason == "length"
    assert completion.usage.output_tokens == max_tokens
    (call,) = completion.tool_calls
    # Still well formed: an id, the name, and arguments cut off before they began.
    assert (call.name, call.arguments_json) == ("get_weather", "{}")
    assert call.id
    assert checked_completion("sim", completion) == completion
    assert [d.tool_call for d in deltas if d.tool_call] == [call]
    assert (deltas[-1].finish_reason, deltas[-1].usage) == ("length", completion.usage)


async def test_a_tool_call_that_fits_is_unchanged() -> None:
    completion, _ = await _both(_request("Weather in Paris?", _tool_params(8)))
    assert completion.finish_reason == "tool_calls"
    assert completion.usage.output_tokens == 8
