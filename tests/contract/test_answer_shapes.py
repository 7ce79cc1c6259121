"""Answers that are not plain text: a refusal, a finish with nothing produced, usage the
server did not report. Each vendor's adapter against its fake, unary and streamed."""

from __future__ import annotations

import json

import pytest

from quorum.server.domain import Tool
from quorum.server.errors import (
    ProviderAuthError,
    ProviderBadResponse,
    ProviderError,
    ProviderQuotaExhausted,
    ProviderRateLimited,
)
from quorum.server.providers.anthropic import _finish
from quorum.server.providers.base import (
    MAX_ANSWER_BYTES,
    Provider,
    ProviderRequest,
    StreamDelta,
)
from quorum.server.providers.http import MAX_BODY_BYTES
from quorum.server.providers.openai import _read_chunk
from tests.contract.conftest import VendorCase, ask
from tests.fakes.common import OK_TEXT, REFUSAL_TEXT

WEATHER = Tool("get_weather", "Current weather in a city.", '{"type": "object"}')


async def _streamed(provider: Provider, model: str) -> tuple[str, StreamDelta]:
    deltas = [d async for d in provider.stream(ask(model))]
    return "".join(d.text for d in deltas), deltas[-1]


async def _answer(
    provider: Provider, request: ProviderRequest, mode: str, into: list[StreamDelta]
) -> None:
    """Run ``request`` unary (``mode`` "complete") or streamed, each delta into ``into``."""
    if mode == "complete":
        await provider.complete(request)
        return
    async for delta in provider.stream(request):
        into.append(delta)


async def test_a_refusal_is_a_filtered_answer_never_an_empty_one(
    provider: Provider, case: VendorCase
) -> None:
    unary = await provider.complete(ask("refusal"))
    text, last = await _streamed(provider, "refusal")
    assert unary.finish_reason == last.finish_reason == "content_filter"
    # OpenAI and Anthropic say why; Gemini's SAFETY finish carries no text.
    expected = "" if case.kind == "gemini" else REFUSAL_TEXT
    assert unary.content == text == expected


async def test_usage_not_reported_is_none_in_a_stream(provider: Provider, case: VendorCase) -> None:
    unary = await provider.complete(ask("no-usage"))
    text, last = await _streamed(provider, "no-usage")
    assert unary.content == text == OK_TEXT
    if case.kind == "anthropic":  # the Messages API always reports usage
        assert last.usage is not None and last.usage.output_tokens > 0
    else:  # left to the caller to estimate, never a zero that looks reported
        assert last.usage is None
        assert (unary.usage.input_tokens, unary.usage.output_tokens) == (0, 0)


async def test_a_finish_that_produced_nothing_is_a_bad_response(
    provider: Provider, case: VendorCase
) -> None:
    if case.kind != "gemini":
        pytest.skip("MALFORMED_FUNCTION_CALL and its kin are Gemini's finish reasons")
    with pytest.raises(ProviderBadResponse, match="MALFORMED_FUNCTION_CALL"):
        await provider.complete(ask("malformed-call"))
    with pytest.raises(ProviderBadResponse, match="MALFORMED_FUNCTION_CALL"):
        await _streamed(provider, "malformed-call")


def test_json_cut_short_by_max_tokens_is_length_not_stop() -> None:
    # Anthropic JSON mode: the answer tool's call is complete only if the turn ended.
    assert _finish("tool_use", True) == "stop"
    assert _finish("max_tokens", True) == "length"
    assert _finish("max_tokens", False) == "length"


def test_parallel_calls_streamed_whole_without_an_index_stay_apart() -> None:
    # Some OpenAI-compatible servers send each call whole, with its id and no index.
    calls: dict[int, dict[str, str]] = {}
    for call_id, name, arguments in (
        ("c1", "get_weather", '{"city":"Paris"}'),
        ("c2", "get_time", '{"tz":"CET"}'),
    ):
        chunk = {
            "choices": [
                {
                    "delta": {
                        "tool_calls": [
                            {
                                "id": call_id,
                                "type": "function",
                                "function": {"name": name, "arguments": arguments},
                            }
                        ]
                    }
                }
            ]
        }
        _read_chunk("p", chunk, calls)
    assert [(c["id"], c["name"], json.loads(c["arguments"])) for c in calls.values()] == [
        ("c1", "get_weather", {"city": "Paris"}),
        ("c2", "get_time", {"tz": "CET"}),
    ]
    # An indexless continuation of the same call (no id) still appends to it.
    _read_chunk(
        "p", {"choices": [{"delta": {"tool_calls": [{"function": {"arguments": ""}}]}}]}, calls
    )
    assert len(calls) == 2


async def test_an_account_out_of_quota_is_not_a_rate_limit(
    provider: Provider, case: VendorCase
) -> None:
    with pytest.raises(ProviderError) as caught:
        await provider.complete(ask("quota"))
    if case.kind == "gemini":  # per-minute quota: a real rate limit with a retry delay
        assert isinstance(caught.value, ProviderRateLimited)
    else:  # OpenAI's 429 insufficient_quota, Anthropic's 400 credit balance
        assert isinstance(caught.value, ProviderQuotaExhausted)
        assert caught.value.reason == "PROVIDER_QUOTA"


async def test_a_bad_key_is_an_auth_error_not_the_callers_bad_request(
    provider: Provider,
) -> None:
    # Gemini answers a bad key with 400 INVALID_ARGUMENT (reason API_KEY_INVALID).
    with pytest.raises(ProviderAuthError):
        await provider.complete(ask("bad-key"))
    with pytest.raises(ProviderAuthError):
        await _streamed(provider, "bad-key")


async def test_prompt_cache_reads_and_writes_are_told_apart(
    provider: Provider, case: VendorCase
) -> None:
    plain = await provider.complete(ask("ok"))
    unary = await provider.complete(ask("cached"))
    _, last = await _streamed(provider, "cached")
    total = plain.usage.input_tokens
    for usage in (unary.usage, last.usage):
        assert usage is not None
        assert usage.input_tokens == total  # every input token, the cache's included
        assert usage.cached_input_tokens == total // 2
        # Only Anthropic reports what was written to the cache.
        assert usage.cache_write_tokens == (total // 4 if case.kind == "anthropic" else 0)


# --- answers a caller could not use --------------------------------------------------------


@pytest.mark.parametrize("mode", ["complete", "stream"])
@pytest.mark.parametrize(
    ("model", "problem"),
    [
        ("bad-tool-args", "arguments are not valid JSON: '{not json'"),
        ("bad-tool-array", "arguments are not a JSON object"),
        ("bad-tool-name", "no id"),
    ],
    ids=["not-json", "not-an-object", "no-id-or-name"],
)
async def test_a_malformed_tool_call_is_a_bad_response(
    provider: Provider, case: VendorCase, model: str, problem: str, mode: str
) -> None:
    # The caller could not even send such a call back (Quorum's own request validation
    # refuses it): the executor must fail over, not answer with it.
    if case.kind == "anthropic" and model == "bad-tool-args" and mode == "complete":
        problem = "arguments are not a JSON object"  # the input is a JSON string
    if case.kind == "gemini" and model != "bad-tool-array":
        # Gemini's args are a JSON value (a string here is no object); its calls have no
        # id of their own and the adapter makes one, so only the name can be missing.
        problem = {"bad-tool-args": "not a JSON object", "bad-tool-name": "no name"}[model]
    request = ask(model, "Weather?", tools=(WEATHER,))
    received: list[StreamDelta] = []
    with pytest.raises(ProviderBadResponse, match="malformed tool call") as caught:
        await _answer(provider, request, mode, received)
    assert problem in caught.value.message
    assert caught.value.provider == provider.name
    assert caught.value.message.startswith(f"{provider.name}: ")
    assert not received


async def test_a_tool_call_cut_off_at_max_tokens_is_the_callers_answer(
    provider: Provider, case: VendorCase
) -> None:
    # Arguments cut short at the caller's max_tokens are what it asked for, as the vendors
    # return them: not the provider's fault, so no failover, no breaker count.
    if case.kind == "gemini":
        pytest.skip("Gemini's args are a JSON value: they cannot be cut off mid-text")
    request = ask("cut-tool-args", "Weather?", tools=(WEATHER,))
    deltas = [d async for d in provider.stream(request)]
    streamed = [d.tool_call for d in deltas if d.tool_call is not None]
    assert [c.arguments_json for c in streamed] == ['{"city": "Par']
    assert deltas[-1].finish_reason == "length"
    if case.kind == "openai":  # Anthropic's unary input is a JSON value, never cut text
        unary = await provider.complete(request)
        assert unary.finish_reason == "length"
        assert [c.arguments_json for c in unary.tool_calls] == ['{"city": "Par']


async def test_well_formed_tool_calls_still_pass(provider: Provider, case: VendorCase) -> None:
    unary = await provider.complete(ask("tools", "Weather?", tools=(WEATHER,)))
    deltas = [d async for d in provider.stream(ask("tools", "Weather?", tools=(WEATHER,)))]
    streamed = [d.tool_call for d in deltas if d.tool_call is not None]
    for call in (*unary.tool_calls, *streamed):
        assert call.id and call.name == "get_weather"
        assert json.loads(call.arguments_json) == {"city": "Paris"}
    assert len(unary.tool_calls) == len(streamed) == 1


async def test_an_answer_just_under_the_size_limit_passes(provider: Provider) -> None:
    kib = MAX_ANSWER_BYTES // 1024 - 16
    unary = await provider.complete(ask(f"huge-{kib}"))
    text, last = await _streamed(provider, f"huge-{kib}")
    assert len(unary.content) == len(text) == kib * 1024
    assert last.finish_reason == "stop"


@pytest.mark.parametrize("mode", ["complete", "stream"])
async def test_an_answer_too_large_for_a_grpc_client_is_a_bad_response(
    provider: Provider, mode: str
) -> None:
    # The RouteResponse must fit a default gRPC client's 4 MiB receive limit.
    model = f"huge-{MAX_ANSWER_BYTES // 1024 + 64}"
    received: list[StreamDelta] = []
    with pytest.raises(ProviderBadResponse, match="answer too large") as caught:
        await _answer(provider, ask(model), mode, received)
    assert caught.value.provider == provider.name
    assert not any(d.finish_reason for d in received)  # never a complete answer
    assert sum(len(d.text) for d in received) <= MAX_ANSWER_BYTES


@pytest.mark.parametrize("model", ["huge", "huge-chunked"])
async def test_a_body_past_the_limit_is_not_read_on(provider: Provider, model: str) -> None:
    # With a Content-Length the call fails before reading; without one (chunked), as
    # soon as what was read passes the limit.
    kib = MAX_BODY_BYTES // 1024 + 1024
    expected = "byte body" if model == "huge" else "read no further"
    with pytest.raises(ProviderBadResponse, match=f"answer too large.*{expected}"):
        await provider.complete(ask(f"{model}-{kib}"))
