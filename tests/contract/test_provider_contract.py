"""The contract every provider adapter keeps, run against each vendor's fake server.

One set of tests; each runs once per vendor (see ``conftest.CASES``). The fakes record
the request they understood in a vendor-neutral form (``last_request``), so the tests
can check what was sent without knowing any vendor's wire format.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from quorum.server.domain import (
    Completion,
    ContentPart,
    ImagePart,
    Message,
    ResponseFormat,
    ResponseFormatType,
    Role,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
)
from quorum.server.errors import (
    ProviderAuthError,
    ProviderBadResponse,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from quorum.server.providers.base import Provider, ProviderRequest, StreamDelta
from quorum.server.providers.http import HttpClient
from tests.contract.conftest import Control, VendorCase, ask, make_provider
from tests.fakes.common import JSON_ANSWER, LOGPROB_STEP, OK_TEXT, TOOL_ARGUMENTS, Running

WEATHER = Tool(
    name="get_weather",
    description="Current weather in a city.",
    parameters_json=json.dumps(
        {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        }
    ),
)
SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "integer"}, "unit": {"type": "string"}},
    "required": ["answer", "unit"],
    "additionalProperties": False,
}
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
Mode = str  # "complete" or "stream"


async def collect(provider: Provider, request: ProviderRequest) -> list[StreamDelta]:
    return [delta async for delta in provider.stream(request)]


async def drain(provider: Provider, request: ProviderRequest, into: list[StreamDelta]) -> None:
    async for delta in provider.stream(request):
        into.append(delta)


async def run(provider: Provider, request: ProviderRequest, mode: Mode) -> Completion | None:
    if mode == "complete":
        return await provider.complete(request)
    await collect(provider, request)
    return None


# --- success -----------------------------------------------------------------------------


async def test_success_with_usage(provider: Provider, case: VendorCase) -> None:
    completion = await provider.complete(ask("ok"))
    assert completion.content == OK_TEXT
    assert completion.finish_reason == "stop"
    assert completion.tool_calls == ()
    assert completion.usage.input_tokens == 2  # "Hi there"
    assert completion.usage.output_tokens == len(OK_TEXT.split())
    assert provider.kind == case.kind


async def test_multi_turn_with_system(provider: Provider, control: Control) -> None:
    completion = await provider.complete(
        ask(
            "echo",
            Message(Role.SYSTEM, "You are terse."),
            Message(Role.USER, "What is 2+2?"),
            Message(Role.ASSISTANT, "4"),
            Message(Role.USER, "And 3+3?"),
        )
    )
    assert completion.content == "And 3+3?"
    seen = (await control.stats())["last_request"]
    assert seen["system"] == "You are terse."
    assert [(t["role"], t["text"]) for t in seen["turns"]] == [
        ("user", "What is 2+2?"),
        ("assistant", "4"),
        ("user", "And 3+3?"),
    ]


async def test_generation_params_are_sent(
    provider: Provider, control: Control, case: VendorCase
) -> None:
    await provider.complete(ask("ok", max_tokens=64, temperature=0.5, top_p=0.9, stop=("END",)))
    params = (await control.stats())["last_request"]["params"]
    expected = {"max_tokens": 64, "temperature": 0.5, "top_p": 0.9, "stop": ["END"]}
    if case.kind == "anthropic":  # recent Claude models refuse the pair: temperature wins
        del expected["top_p"]
    assert {k: params.get(k) for k in expected} == expected
    assert case.kind != "anthropic" or "top_p" not in params
    await provider.complete(ask("ok", top_p=0.9))  # alone, it is sent
    assert (await control.stats())["last_request"]["params"]["top_p"] == 0.9


async def test_tools_both_ways(provider: Provider, control: Control, case: VendorCase) -> None:
    question = Message(Role.USER, "Weather in Paris?")
    first = await provider.complete(ask("tools", question, tools=(WEATHER,)))
    assert first.finish_reason == "tool_calls"
    [call] = first.tool_calls
    assert call.name == "get_weather"
    assert json.loads(call.arguments_json) == TOOL_ARGUMENTS
    assert call.id
    assert (await control.stats())["last_request"]["tools"] == ["get_weather"]

    answer = await provider.complete(
        ask(
            "echo",
            question,
            Message(Role.ASSISTANT, tool_calls=(call,)),
            Message(Role.TOOL, "18 degrees and sunny", tool_call_id=call.id, name=call.name),
            tools=(WEATHER,),
        )
    )
    assert answer.content == "18 degrees and sunny"
    turns = (await control.stats())["last_request"]["turns"]
    assert [t["role"] for t in turns] == ["user", "assistant", "tool"]
    assert [(c["name"], c["arguments"]) for c in turns[1]["tool_calls"]] == [
        ("get_weather", TOOL_ARGUMENTS)
    ]
    # what the vendor attached to its call (Gemini's thought signature) came back with it
    assert turns[1]["tool_calls"][0].get("signature", "") == case.call_signature
    assert [r["content"] for r in turns[2]["tool_results"]] == ["18 degrees and sunny"]


TIDE = Tool(name="get_tide", description="Tide times at a port.")


@pytest.mark.parametrize(
    ("choice", "called"),
    [
        (ToolChoice(), None),
        (ToolChoice(ToolChoiceMode.REQUIRED), "get_weather"),
        (ToolChoice(ToolChoiceMode.TOOL, "get_tide"), "get_tide"),
    ],
    ids=["auto", "required", "named"],
)
async def test_tool_choice_is_sent_and_honoured(
    provider: Provider, control: Control, choice: ToolChoice, called: str | None
) -> None:
    # The fake's "ok" model answers in text unless the request forces a tool call.
    completion = await provider.complete(
        ask("ok", "Weather in Paris?", tools=(WEATHER, TIDE), tool_choice=choice)
    )
    assert [c.name for c in completion.tool_calls] == ([called] if called else [])
    assert all(json.loads(c.arguments_json) == TOOL_ARGUMENTS for c in completion.tool_calls)
    assert completion.finish_reason == ("tool_calls" if called else "stop")
    seen = (await control.stats())["last_request"]
    assert seen["tools"] == ["get_weather", "get_tide"]
    assert seen["forced_tool"] == ("get_tide" if choice.mode is ToolChoiceMode.TOOL else "")
    if choice.mode is not ToolChoiceMode.TOOL:
        assert seen["tool_choice"] == choice.mode.value


async def test_tool_choice_none_keeps_the_tools_and_forbids_a_call(
    provider: Provider, control: Control
) -> None:
    # After a tool result the tools must stay defined (Anthropic refuses tool blocks
    # without them); "none" is sent in the vendor's form and the model answers in text.
    call = ToolCall("call_1", "get_weather", json.dumps(TOOL_ARGUMENTS))
    completion = await provider.complete(
        ask(
            "tools",
            Message(Role.USER, "Weather in Paris?"),
            Message(Role.ASSISTANT, tool_calls=(call,)),
            Message(Role.TOOL, "18 degrees", tool_call_id="call_1", name="get_weather"),
            tools=(WEATHER,),
            tool_choice=ToolChoice(ToolChoiceMode.NONE),
        )
    )
    assert completion.tool_calls == () and completion.content
    seen = (await control.stats())["last_request"]
    assert (seen["tools"], seen["tool_choice"]) == (["get_weather"], "none")


async def test_a_forced_call_in_json_mode_is_a_tool_call(provider: Provider) -> None:
    # JSON mode shapes a text answer; a forced call is the answer instead, never read as JSON.
    completion = await provider.complete(
        ask(
            "ok",
            "Weather in Paris?",
            tools=(WEATHER,),
            tool_choice=ToolChoice(ToolChoiceMode.TOOL, "get_weather"),
            response_format=ResponseFormat(ResponseFormatType.JSON_OBJECT),
        )
    )
    assert [c.name for c in completion.tool_calls] == ["get_weather"]
    assert json.loads(completion.tool_calls[0].arguments_json) == TOOL_ARGUMENTS


async def test_a_caller_tool_named_like_the_json_tool_stays_a_tool_call(
    provider: Provider, control: Control
) -> None:
    # Anthropic's JSON mode adds a tool of its own; a caller's tool of the same name must
    # neither be sent twice nor have its call read as the JSON answer.
    own = replace(WEATHER, name="json_response")
    completion = await provider.complete(
        ask(
            "tools",
            "Weather in Paris?",
            tools=(own,),
            response_format=ResponseFormat(ResponseFormatType.JSON_OBJECT),
        )
    )
    assert [c.name for c in completion.tool_calls] == ["json_response"]
    assert json.loads(completion.tool_calls[0].arguments_json) == TOOL_ARGUMENTS
    assert (await control.stats())["last_request"]["tools"][0] == "json_response"


async def test_json_object_mode(provider: Provider) -> None:
    fmt = ResponseFormat(ResponseFormatType.JSON_OBJECT)
    completion = await provider.complete(ask("ok", response_format=fmt))
    assert json.loads(completion.content) == JSON_ANSWER
    assert completion.tool_calls == ()
    assert completion.finish_reason == "stop"


async def test_json_schema_mode(provider: Provider, control: Control) -> None:
    fmt = ResponseFormat(ResponseFormatType.JSON_SCHEMA, json.dumps(SCHEMA), "answer")
    completion = await provider.complete(ask("ok", response_format=fmt))
    assert json.loads(completion.content) == JSON_ANSWER
    assert (await control.stats())["last_request"]["schema"] == SCHEMA


async def test_image_parts(provider: Provider, control: Control) -> None:
    message = Message(
        Role.USER,
        parts=(
            ContentPart(text="What is in these pictures?"),
            ContentPart(image=ImagePart(data=PNG, media_type="image/png")),
            ContentPart(image=ImagePart(url="https://example.com/cat.png")),
        ),
    )
    await provider.complete(ask("ok", message))
    [turn] = (await control.stats())["last_request"]["turns"]
    assert turn["text"] == "What is in these pictures?"
    assert turn["images"] == [
        {"media_type": "image/png", "data": base64.b64encode(PNG).decode()},
        {"url": "https://example.com/cat.png"},
    ]


async def test_logprobs(provider: Provider, case: VendorCase) -> None:
    completion = await provider.complete(ask("ok", logprobs=True))
    if not case.logprobs:
        assert completion.mean_logprob is None
        return
    values = [-LOGPROB_STEP * (1 + i % 3) for i in range(len(OK_TEXT.split()))]
    assert completion.mean_logprob == pytest.approx(sum(values) / len(values))


# --- streaming ---------------------------------------------------------------------------


async def test_stream_text_and_final_usage(provider: Provider) -> None:
    deltas = await collect(provider, ask("ok"))
    texts = [d.text for d in deltas if d.text]
    assert "".join(texts) == OK_TEXT
    assert len(texts) > 1
    final = deltas[-1]
    assert final.finish_reason == "stop"
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (2, len(OK_TEXT.split()))
    assert all(d.usage is None for d in deltas[:-1])


async def test_stream_tool_call(provider: Provider) -> None:
    deltas = await collect(provider, ask("tools", tools=(WEATHER,)))
    calls = [d.tool_call for d in deltas if d.tool_call is not None]
    assert [(c.name, json.loads(c.arguments_json)) for c in calls] == [
        ("get_weather", TOOL_ARGUMENTS)
    ]
    assert deltas[-1].finish_reason == "tool_calls"
    assert deltas[-1].usage is not None


async def test_stream_json_mode(provider: Provider) -> None:
    fmt = ResponseFormat(ResponseFormatType.JSON_SCHEMA, json.dumps(SCHEMA), "answer")
    deltas = await collect(provider, ask("ok", response_format=fmt))
    assert json.loads("".join(d.text for d in deltas)) == JSON_ANSWER
    assert not any(d.tool_call for d in deltas)
    assert deltas[-1].finish_reason == "stop"


# --- errors ------------------------------------------------------------------------------

STATUS_ERRORS: dict[int, type[ProviderError]] = {
    400: ProviderRejected,
    401: ProviderAuthError,
    403: ProviderAuthError,
    404: ProviderRejected,
    429: ProviderRateLimited,
    500: ProviderUnavailable,
    503: ProviderUnavailable,
    529: ProviderUnavailable,
}


@pytest.mark.parametrize("mode", ["complete", "stream"])
@pytest.mark.parametrize("status", sorted(STATUS_ERRORS))
async def test_error_status(provider: Provider, status: int, mode: Mode) -> None:
    with pytest.raises(STATUS_ERRORS[status]) as caught:
        await run(provider, ask(f"error-{status}"), mode)
    assert caught.value.status == status
    assert caught.value.provider == provider.name
    assert f"HTTP {status}: " in caught.value.message  # the vendor's message was read


async def test_rate_limit_retry_after_seconds(provider: Provider) -> None:
    with pytest.raises(ProviderRateLimited) as caught:
        await provider.complete(ask("ratelimit-7"))
    assert caught.value.retry_after_s == 7.0


async def test_rate_limit_retry_after_http_date(provider: Provider) -> None:
    with pytest.raises(ProviderRateLimited) as caught:
        await provider.complete(ask("ratelimit-date-30"))
    assert caught.value.retry_after_s is not None
    assert 27.0 <= caught.value.retry_after_s <= 30.0


async def test_rate_limit_delay_from_body(provider: Provider, case: VendorCase) -> None:
    with pytest.raises(ProviderRateLimited) as caught:
        await provider.complete(ask("error-429"))
    assert caught.value.retry_after_s == case.body_retry_after_s


async def test_missing_credentials_are_an_auth_error(
    case: VendorCase, fake: Running, http: HttpClient
) -> None:
    keyless = make_provider(case, fake, http, key=None)
    with pytest.raises(ProviderAuthError):
        await keyless.complete(ask("ok"))


@pytest.mark.parametrize("mode", ["complete", "stream"])
async def test_slow_beyond_timeout(provider: Provider, control: Control, mode: Mode) -> None:
    with pytest.raises(ProviderTimeout):
        await run(provider, ask("slow-3000", timeout_s=0.2), mode)
    stats = await control.wait_for("client_disconnects", 1)
    assert stats["client_disconnects"] == 1  # the upstream saw the request abandoned


async def test_stream_stalling_beyond_timeout(provider: Provider) -> None:
    received: list[StreamDelta] = []
    with pytest.raises(ProviderTimeout):
        await drain(provider, ask("drip-3000", timeout_s=0.3), received)
    assert not any(d.finish_reason for d in received)


@pytest.mark.parametrize("mode", ["complete", "stream"])
async def test_dropped_connection(provider: Provider, mode: Mode) -> None:
    with pytest.raises(ProviderUnavailable):
        await run(provider, ask("drop"), mode)


async def test_reset_mid_stream_raises(provider: Provider) -> None:
    received: list[StreamDelta] = []
    with pytest.raises(ProviderUnavailable):
        await drain(provider, ask("drop-mid-stream"), received)
    assert any(d.text for d in received)  # it broke mid-way, after some text
    assert not any(d.finish_reason for d in received)


async def test_error_event_mid_stream_raises(provider: Provider) -> None:
    received: list[StreamDelta] = []
    with pytest.raises(ProviderUnavailable):
        await drain(provider, ask("error-mid-stream"), received)
    assert not any(d.finish_reason for d in received)


@pytest.mark.parametrize("mode", ["complete", "stream"])
async def test_malformed_json(provider: Provider, mode: Mode) -> None:
    with pytest.raises(ProviderBadResponse):
        await run(provider, ask("malformed"), mode)


async def test_truncated_stream_raises(provider: Provider) -> None:
    received: list[StreamDelta] = []
    with pytest.raises(ProviderBadResponse):
        await drain(provider, ask("truncated-stream"), received)
    assert not any(d.finish_reason for d in received)


async def test_scripted_behaviours_override_the_model(provider: Provider, control: Control) -> None:
    await control.script("error-503", "echo")
    with pytest.raises(ProviderUnavailable):
        await provider.complete(ask("ok"))
    assert (await provider.complete(ask("ok", "ping"))).content == "ping"
    assert (await provider.complete(ask("ok"))).content == OK_TEXT
    stats = await control.stats()
    assert stats["requests"] == 3
    assert stats["by_behaviour"] == {"error": 1, "echo": 1, "ok": 1}
    await control.reset()
    assert (await control.stats())["requests"] == 0


# --- cancellation ------------------------------------------------------------------------


async def test_closing_the_stream_early_closes_the_upstream_connection(
    provider: Provider, control: Control
) -> None:
    stream = provider.stream(ask("drip-50"))
    assert isinstance(stream, AsyncIterator)
    first = await anext(stream)
    assert first.text
    await stream.aclose()  # type: ignore[attr-defined]
    stats = await control.wait_for("client_disconnects", 1)
    assert stats["client_disconnects"] == 1
    assert stats["completed"] == 0


async def test_cancelling_a_call_closes_the_upstream_connection(
    provider: Provider, control: Control
) -> None:
    task = asyncio.create_task(provider.complete(ask("slow-3000")))
    await control.wait_for("in_flight", 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stats = await control.wait_for("client_disconnects", 1)
    assert stats["client_disconnects"] == 1


async def test_adapter_accepts_its_own_tool_calls_back(provider: Provider) -> None:
    """Ids the adapter made up (Gemini) survive a round trip through the caller."""
    call = ToolCall("call-from-elsewhere", "get_weather", json.dumps(TOOL_ARGUMENTS))
    completion = await provider.complete(
        ask(
            "echo",
            Message(Role.USER, "Weather?"),
            Message(Role.ASSISTANT, tool_calls=(call,)),
            Message(Role.TOOL, '{"temp": 18}', tool_call_id=call.id),
            tools=(WEATHER,),
        )
    )
    assert json.loads(completion.content) == {"temp": 18}


async def test_a_conversation_carries_on_with_another_vendors_call_ids(
    provider: Provider, control: Control, case: VendorCase
) -> None:
    # A conversation begun on Gemini carries its ids (a thought signature makes them
    # hundreds of characters long); every vendor must still take the turns, paired.
    weather = ToolCall("gcall_1a2b~sig~" + "QUJD" * 80, "get_weather", "{}")
    tide = ToolCall("toolu_01", "get_tide", "{}")
    completion = await provider.complete(
        ask(
            "echo",
            Message(Role.USER, "Weather and tide?"),
            Message(Role.ASSISTANT, tool_calls=(weather, tide)),
            Message(Role.TOOL, "sunny", tool_call_id=weather.id),
            Message(Role.TOOL, "high at noon", tool_call_id=tide.id),
            tools=(WEATHER, TIDE),
        )
    )
    assert completion.content
    turns = (await control.stats())["last_request"]["turns"]
    calls = {c["name"]: c["id"] for c in turns[1]["tool_calls"]}
    results = [r["id"] for t in turns[2:] for r in t["tool_results"]]
    if case.kind == "gemini":  # results pair with calls by name: each found its own
        assert results == ["get_weather", "get_tide"]
    else:
        assert calls["get_tide"] == "toolu_01"
        assert len(calls["get_weather"]) <= 40
        assert results == [calls["get_weather"], calls["get_tide"]]


async def test_gemini_ids_are_unique_across_turns(provider: Provider, case: VendorCase) -> None:
    if case.kind != "gemini":
        pytest.skip("the vendor makes the ids; only Gemini's API leaves it to the adapter")
    first = await provider.complete(ask("tools", "Weather?", tools=(WEATHER,)))
    second = await provider.complete(ask("tools", "Weather again?", tools=(WEATHER,)))
    assert first.tool_calls[0].id != second.tool_calls[0].id
