"""The vendors' own SDKs, pointed at the fakes: proof that the fakes speak the real formats.

Each SDK parses the fake's answers into its typed models, iterates its streams with its
own SSE decoder and raises its own typed exceptions for the fake's error bodies. If a
fake drifted from the real wire format, these tests would fail where the adapters'
contract tests might not. Retries are off so failures stay fast.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from tests.fakes import anthropic_server, gemini_server, openai_server
from tests.fakes.common import JSON_ANSWER, OK_TEXT, TOOL_ARGUMENTS

WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}

# --- OpenAI ------------------------------------------------------------------------------


@pytest.fixture
async def openai_client() -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai_server.serve() as fake:
        client = openai.AsyncOpenAI(api_key="sk-test", base_url=fake.base_url, max_retries=0)
        yield client
        await client.close()


async def test_openai_unary(openai_client: openai.AsyncOpenAI) -> None:
    completion = await openai_client.chat.completions.create(
        model="ok",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        logprobs=True,
    )
    choice = completion.choices[0]
    assert choice.message.content == OK_TEXT
    assert choice.finish_reason == "stop"
    assert choice.logprobs is not None and choice.logprobs.content
    assert completion.usage is not None and completion.usage.completion_tokens > 0


async def test_openai_stream(openai_client: openai.AsyncOpenAI) -> None:
    stream = await openai_client.chat.completions.create(
        model="ok",
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, finish = "", None, None
    async for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
        usage = chunk.usage or usage
    assert (text, finish) == (OK_TEXT, "stop")
    assert usage is not None and usage.total_tokens > 0


async def test_openai_tool_call_and_json(openai_client: openai.AsyncOpenAI) -> None:
    completion = await openai_client.chat.completions.create(
        model="tools",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[
            {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}}
        ],
    )
    [call] = completion.choices[0].message.tool_calls or []
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == TOOL_ARGUMENTS
    assert completion.choices[0].finish_reason == "tool_calls"

    messages: list[Any] = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees"},
    ]
    follow_up = await openai_client.chat.completions.create(
        model="json", messages=messages, response_format={"type": "json_object"}
    )
    assert json.loads(follow_up.choices[0].message.content or "") == JSON_ANSWER
    # Like the real API's, a call's id is never reused by a later answer: a conversation
    # that carries several turns of calls holds each id once.
    again = await openai_client.chat.completions.create(
        model="tools",
        messages=messages,
        tools=[
            {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}}
        ],
    )
    [later] = again.choices[0].message.tool_calls or []
    assert later.id != call.id


def _function_names(completion: Any) -> list[str]:
    calls = completion.choices[0].message.tool_calls or []
    return [c.function.name for c in calls if c.type == "function"]


async def test_openai_tool_choice(openai_client: openai.AsyncOpenAI) -> None:
    tools: list[Any] = [
        {"type": "function", "function": {"name": name, "parameters": WEATHER_SCHEMA}}
        for name in ("get_weather", "get_forecast")
    ]
    question: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    required = await openai_client.chat.completions.create(
        model="ok", messages=question, tools=tools, tool_choice="required"
    )
    assert _function_names(required) == ["get_weather"]
    named = await openai_client.chat.completions.create(
        model="ok",
        messages=question,
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "get_forecast"}},
    )
    assert _function_names(named) == ["get_forecast"]
    none = await openai_client.chat.completions.create(
        model="tools", messages=question, tools=tools, tool_choice="none"
    )
    assert none.choices[0].message.tool_calls is None
    with pytest.raises(openai.BadRequestError, match="tool_choice"):
        await openai_client.chat.completions.create(
            model="ok",
            messages=question,
            tools=tools,
            tool_choice={"type": "function", "function": {"name": "get_tide"}},
        )


async def test_openai_stream_tool_call(openai_client: openai.AsyncOpenAI) -> None:
    stream = await openai_client.chat.completions.create(
        model="tools",
        messages=[{"role": "user", "content": "Weather?"}],
        tools=[
            {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}}
        ],
        stream=True,
    )
    arguments, names = "", []
    async for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or ():
                if call.function and call.function.name:
                    names.append(call.function.name)
                arguments += (call.function.arguments or "") if call.function else ""
    assert names == ["get_weather"]
    assert json.loads(arguments) == TOOL_ARGUMENTS


@pytest.mark.parametrize(
    ("model", "error"),
    [
        ("error-400", openai.BadRequestError),
        ("error-401", openai.AuthenticationError),
        ("error-404", openai.NotFoundError),
        ("ratelimit-3", openai.RateLimitError),
        ("error-500", openai.InternalServerError),
        ("error-503", openai.InternalServerError),
    ],
)
async def test_openai_errors(
    openai_client: openai.AsyncOpenAI, model: str, error: type[openai.APIStatusError]
) -> None:
    with pytest.raises(error) as caught:
        await openai_client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Hi"}]
        )
    body = caught.value.body
    assert isinstance(body, dict) and body.get("message")


# --- Anthropic ---------------------------------------------------------------------------


@pytest.fixture
async def anthropic_client() -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic_server.serve() as fake:
        client = anthropic.AsyncAnthropic(
            api_key="sk-ant-test", base_url=fake.base_url, max_retries=0
        )
        yield client
        await client.close()


async def test_anthropic_unary(anthropic_client: anthropic.AsyncAnthropic) -> None:
    message = await anthropic_client.messages.create(
        model="ok",
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hi"}],
    )
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].type == "text" and message.content[0].text == OK_TEXT
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0


async def test_anthropic_stream(anthropic_client: anthropic.AsyncAnthropic) -> None:
    kinds: list[str] = []
    async with anthropic_client.messages.stream(
        model="ok", max_tokens=100, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        async for event in stream:
            kinds.append(event.type)
        message = await stream.get_final_message()
    assert kinds[0] == "message_start"
    assert {"content_block_start", "content_block_delta", "content_block_stop"} <= set(kinds)
    assert message.content[0].type == "text" and message.content[0].text == OK_TEXT
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == len(OK_TEXT.split())


async def test_anthropic_tool_use_both_ways(anthropic_client: anthropic.AsyncAnthropic) -> None:
    tools: list[Any] = [{"name": "get_weather", "input_schema": WEATHER_SCHEMA}]
    async with anthropic_client.messages.stream(
        model="tools",
        max_tokens=100,
        tools=tools,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    ) as stream:
        message = await stream.get_final_message()
    [block] = message.content
    assert block.type == "tool_use" and block.name == "get_weather"
    assert block.input == TOOL_ARGUMENTS
    assert message.stop_reason == "tool_use"

    messages: list[Any] = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [block.model_dump()]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "18C"}],
        },
    ]
    reply = await anthropic_client.messages.create(
        model="echo", max_tokens=100, tools=tools, messages=messages
    )
    assert reply.content[0].type == "text" and reply.content[0].text == "18C"
    again = await anthropic_client.messages.create(
        model="tools", max_tokens=100, tools=tools, messages=messages
    )
    assert again.content[0].type == "tool_use" and again.content[0].id != block.id  # unique


async def test_anthropic_tool_choice(anthropic_client: anthropic.AsyncAnthropic) -> None:
    tools: list[Any] = [
        {"name": name, "input_schema": WEATHER_SCHEMA} for name in ("get_weather", "get_forecast")
    ]
    question: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    any_tool = await anthropic_client.messages.create(
        model="ok", max_tokens=100, tools=tools, tool_choice={"type": "any"}, messages=question
    )
    assert [b.name for b in any_tool.content if b.type == "tool_use"] == ["get_weather"]
    named = await anthropic_client.messages.create(
        model="ok",
        max_tokens=100,
        tools=tools,
        tool_choice={"type": "tool", "name": "get_forecast"},
        messages=question,
    )
    assert [b.name for b in named.content if b.type == "tool_use"] == ["get_forecast"]
    assert named.stop_reason == "tool_use"
    none = await anthropic_client.messages.create(
        model="tools", max_tokens=100, tools=tools, tool_choice={"type": "none"}, messages=question
    )
    assert [b.type for b in none.content] == ["text"]


@pytest.mark.parametrize(
    ("model", "error"),
    [
        ("error-400", anthropic.BadRequestError),
        ("error-401", anthropic.AuthenticationError),
        ("error-404", anthropic.NotFoundError),
        ("ratelimit-3", anthropic.RateLimitError),
        ("error-500", anthropic.InternalServerError),
        ("error-529", anthropic.APIStatusError),
    ],
)
async def test_anthropic_errors(
    anthropic_client: anthropic.AsyncAnthropic, model: str, error: type[anthropic.APIStatusError]
) -> None:
    with pytest.raises(error) as caught:
        await anthropic_client.messages.create(
            model=model, max_tokens=10, messages=[{"role": "user", "content": "Hi"}]
        )
    assert caught.value.status_code == int(model.split("-")[-1]) if "error" in model else 429
    if model == "error-529":
        assert isinstance(caught.value.body, dict)
        assert caught.value.body["error"]["type"] == "overloaded_error"


async def test_anthropic_error_event_mid_stream(anthropic_client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with anthropic_client.messages.stream(
            model="error-mid-stream", max_tokens=100, messages=[{"role": "user", "content": "Hi"}]
        ) as stream:
            await stream.get_final_message()
    assert "overloaded" in str(caught.value).lower()


# --- Gemini ------------------------------------------------------------------------------


@pytest.fixture
async def gemini_client() -> AsyncIterator[genai.Client]:
    # Our own aiohttp session: the SDK's default one subclasses ClientSession, which
    # aiohttp deprecates (a warning, hence an error here).
    async with gemini_server.serve() as fake, aiohttp.ClientSession() as session:
        client = genai.Client(
            api_key="test-key",
            http_options=genai_types.HttpOptions(
                base_url=fake.base_url,
                api_version="v1beta",
                retry_options=genai_types.HttpRetryOptions(attempts=1),
                aiohttp_client=session,
            ),
        )
        yield client
        await client.aio.aclose()


async def test_gemini_unary(gemini_client: genai.Client) -> None:
    response = await gemini_client.aio.models.generate_content(
        model="ok",
        contents="Hi",
        config=genai_types.GenerateContentConfig(
            system_instruction="Be brief.", max_output_tokens=50
        ),
    )
    assert response.text == OK_TEXT
    assert response.usage_metadata is not None
    assert response.usage_metadata.candidates_token_count == len(OK_TEXT.split())
    assert (
        response.candidates
        and response.candidates[0].finish_reason == genai_types.FinishReason.STOP
    )


async def test_gemini_stream(gemini_client: genai.Client) -> None:
    text, last = "", None
    async for chunk in await gemini_client.aio.models.generate_content_stream(
        model="ok", contents="Hi"
    ):
        text += chunk.text or ""
        last = chunk
    assert text == OK_TEXT
    assert last is not None and last.usage_metadata is not None
    assert last.usage_metadata.candidates_token_count == len(OK_TEXT.split())


async def test_gemini_function_call_both_ways(gemini_client: genai.Client) -> None:
    tool = genai_types.Tool(
        function_declarations=[
            genai_types.FunctionDeclaration(
                name="get_weather", parameters_json_schema=WEATHER_SCHEMA
            )
        ]
    )
    config = genai_types.GenerateContentConfig(
        tools=[tool],
        automatic_function_calling=genai_types.AutomaticFunctionCallingConfig(disable=True),
    )
    response = await gemini_client.aio.models.generate_content(
        model="tools", contents="Weather in Paris?", config=config
    )
    [call] = response.function_calls or []
    assert call.name == "get_weather" and call.args == TOOL_ARGUMENTS
    assert response.candidates and response.candidates[0].content is not None

    reply = await gemini_client.aio.models.generate_content(
        model="echo",
        contents=[
            genai_types.Content(role="user", parts=[genai_types.Part(text="Weather in Paris?")]),
            response.candidates[0].content,
            genai_types.Content(
                role="user",
                parts=[
                    genai_types.Part.from_function_response(
                        name="get_weather", response={"output": "18C"}
                    )
                ],
            ),
        ],
        config=config,
    )
    assert reply.text == "18C"


async def test_gemini_function_calling_modes(gemini_client: genai.Client) -> None:
    tool = genai_types.Tool(
        function_declarations=[
            genai_types.FunctionDeclaration(name=name, parameters_json_schema=WEATHER_SCHEMA)
            for name in ("get_weather", "get_forecast")
        ]
    )

    def config(
        mode: genai_types.FunctionCallingConfigMode, allowed: list[str] | None = None
    ) -> genai_types.GenerateContentConfig:
        return genai_types.GenerateContentConfig(
            tools=[tool],
            tool_config=genai_types.ToolConfig(
                function_calling_config=genai_types.FunctionCallingConfig(
                    mode=mode, allowed_function_names=allowed
                )
            ),
            automatic_function_calling=genai_types.AutomaticFunctionCallingConfig(disable=True),
        )

    modes = genai_types.FunctionCallingConfigMode
    forced = await gemini_client.aio.models.generate_content(
        model="ok", contents="Weather in Paris?", config=config(modes.ANY)
    )
    assert [c.name for c in forced.function_calls or []] == ["get_weather"]
    named = await gemini_client.aio.models.generate_content(
        model="ok", contents="Weather in Paris?", config=config(modes.ANY, ["get_forecast"])
    )
    assert [c.name for c in named.function_calls or []] == ["get_forecast"]
    none = await gemini_client.aio.models.generate_content(
        model="tools", contents="Weather in Paris?", config=config(modes.NONE)
    )
    assert none.function_calls is None and none.text
    with pytest.raises(genai_errors.ClientError, match="allowed_function_names"):
        await gemini_client.aio.models.generate_content(
            model="ok", contents="Weather?", config=config(modes.AUTO, ["get_forecast"])
        )


async def test_gemini_json_mode(gemini_client: genai.Client) -> None:
    response = await gemini_client.aio.models.generate_content(
        model="ok",
        contents="Answer in JSON",
        config=genai_types.GenerateContentConfig(
            response_mime_type="application/json", response_json_schema={"type": "object"}
        ),
    )
    assert json.loads(response.text or "") == JSON_ANSWER


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500, 503])
async def test_gemini_errors(gemini_client: genai.Client, status: int) -> None:
    expected = genai_errors.ClientError if status < 500 else genai_errors.ServerError
    with pytest.raises(expected) as caught:
        await gemini_client.aio.models.generate_content(model=f"error-{status}", contents="Hi")
    assert isinstance(caught.value, genai_errors.APIError)
    assert caught.value.code == status
    assert caught.value.status
