"""The OpenAI-compatible front door, driven by the official ``openai`` SDKs.

A real server (gRPC and HTTP in one event loop, one Router) on loopback; the Python SDK
talks to it as it would to OpenAI, and the npm SDK does the same from a Node script. The
SDKs' own parsers, SSE decoders and typed exceptions are the judges of the wire format.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import yaml
from openai.types.chat import ChatCompletionFunctionToolParam, ChatCompletionMessageParam

from quorum.server.app import RunningServer
from quorum.server.config import parse_config
from quorum.server.frontdoor import HttpFrontDoor
from quorum.server.router import Router
from tests.conftest import running_server, sim_config, with_model
from tests.fakes import openai_server
from tests.fakes.common import OK_TEXT

QUORUM = Path(sys.executable).with_name("quorum")
NODE_DIR = Path(__file__).resolve().parents[1] / "node"
WEATHER: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
KEY = {"api_key_env": "FAKE_OPENAI_KEY"}
MATH: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is 17 * 23?"}]


def _base_url(running: RunningServer) -> str:
    assert running.http is not None
    return f"http://127.0.0.1:{running.http.port}/v1"


@asynccontextmanager
async def front_door(
    data: dict[str, Any] | None = None,
) -> AsyncIterator[tuple[RunningServer, openai.AsyncOpenAI]]:
    """A running server with the HTTP front door and an SDK client pointed at it."""
    data = data or sim_config()
    data["server"] = {**data.get("server", {}), "http_address": "127.0.0.1:0"}
    async with running_server(parse_config(data)) as (running, _):
        client = openai.AsyncOpenAI(api_key="sk-any", base_url=_base_url(running), max_retries=0)
        try:
            yield running, client
        finally:
            await client.close()


def all_failing(data: dict[str, Any]) -> dict[str, Any]:
    for name in list(data["models"]):
        data = with_model(data, name, simulated={"failure_rate": 1.0})
    return data


# --- unary ---------------------------------------------------------------------------------


async def test_unary_answer_usage_and_account() -> None:
    async with front_door() as (_, client):
        raw = await client.chat.completions.with_raw_response.create(
            model="quorum:auto",
            messages=[{"role": "system", "content": "Be brief."}, *MATH],
            extra_headers={"x-request-id": "req-7"},
        )
    completion = raw.parse()
    assert completion.id == "chatcmpl-req-7"
    assert completion.object == "chat.completion"
    assert completion.model == "flash"
    (choice,) = completion.choices
    assert (choice.message.role, choice.message.content) == ("assistant", "The answer is 391.")
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    headers = raw.headers
    assert headers["x-quorum-request-id"] == "req-7"
    assert headers["x-quorum-model"] == "flash"
    assert headers["x-quorum-provider"] == "sim"
    assert headers["x-quorum-tier"] == "cheap"
    assert headers["x-quorum-strategy"] == "single"
    assert headers["x-quorum-task"] == "math"
    assert headers["x-quorum-simulated"] == "true"
    cost = float(headers["x-quorum-cost-usd"])
    baseline = float(headers["x-quorum-baseline-cost-usd"])
    assert 0 < cost < baseline
    account = (completion.model_extra or {})["quorum"]
    assert account["request_id"] == "req-7"
    assert account["cost_usd"] == pytest.approx(cost)
    assert account["baseline_model"] == "frontier"
    assert account["saving_usd"] == pytest.approx(baseline - cost)
    assert account["classification"]["task"] == "math"
    assert account["classification"]["difficulty"] == "low"
    assert [r["code"] for r in account["plan"]["reasons"]][:1] == ["AUTO_SINGLE"]
    assert [(a["model"], a["outcome"]) for a in account["attempts"]] == [("flash", "succeeded")]


async def test_concrete_model_fails_over_and_says_so() -> None:
    # Within its tier only: flash fails over to flash-b, the other cheap model.
    data = with_model(sim_config(), "flash", simulated={"failure_rate": 1.0})
    async with front_door(data) as (_, client):
        raw = await client.chat.completions.with_raw_response.create(model="flash", messages=MATH)
    completion = raw.parse()
    assert completion.model == raw.headers["x-quorum-model"] == "flash-b"
    attempts = (completion.model_extra or {})["quorum"]["attempts"]
    assert attempts[0]["model"] == "flash"
    assert (attempts[0]["outcome"], attempts[0]["error_reason"]) == (
        "failed",
        "PROVIDER_UNAVAILABLE",
    )
    assert attempts[-1]["outcome"] == "succeeded"
    assert raw.headers["x-quorum-attempts"] == str(len(attempts))
    reasons = [r["code"] for r in (completion.model_extra or {})["quorum"]["plan"]["reasons"]]
    assert "FORCED_MODEL" in reasons


@pytest.mark.parametrize(
    ("model", "extra_body", "answered_by"),
    [
        ("quorum:premium", None, "frontier"),
        ("quorum:legal_review", None, "frontier"),
        ("quorum:autocomplete", None, "flash"),
        ("quorum:auto?priority=quality", None, "frontier"),
        ("quorum:auto", {"quorum": {"priority": "quality"}}, "frontier"),
        ("quorum:auto?tier=mid&strategy=single", None, "mid"),
        ("frontier", None, "frontier"),
    ],
)
async def test_model_names_route(
    model: str, extra_body: dict[str, Any] | None, answered_by: str
) -> None:
    async with front_door() as (_, client):
        completion = await client.chat.completions.create(
            model=model, messages=MATH, extra_body=extra_body
        )
    assert completion.model == answered_by


async def test_images_need_a_vision_model() -> None:
    image = "data:image/png;base64," + "iVBORw0KGgo" * 4
    async with front_door() as (_, client):
        completion = await client.chat.completions.create(
            model="quorum:auto",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in this picture?"},
                        {"type": "image_url", "image_url": {"url": image, "detail": "low"}},
                    ],
                }
            ],
        )
    assert completion.model in ("mid", "frontier")  # flash has no vision


async def test_json_schema_and_params_are_accepted() -> None:
    async with front_door() as (_, client):
        completion = await client.chat.completions.create(
            model="quorum:auto",
            messages=MATH,
            response_format={
                "type": "json_schema",
                "json_schema": {
                    "name": "answer",
                    "schema": {"type": "object", "properties": {"answer": {"type": "string"}}},
                },
            },
            max_completion_tokens=64,
            temperature=0.2,
            top_p=0.9,
            stop=["\n\n"],
            seed=7,
            user="someone",
        )
    assert json.loads(completion.choices[0].message.content or "") == {
        "answer": "The answer is 391."
    }
    assert completion.model in ("flash", "flash-b", "frontier")  # json_schema capable


# --- tools ---------------------------------------------------------------------------------


async def test_tool_call_round_trip() -> None:
    prompt: ChatCompletionMessageParam = {"role": "user", "content": "Use get_weather for Paris"}
    async with front_door() as (_, client):
        first = await client.chat.completions.create(
            model="quorum:auto", messages=[prompt], tools=[WEATHER], tool_choice="auto"
        )
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content is None
        (call,) = choice.message.tool_calls or []
        assert call.type == "function"
        assert call.function.name == "get_weather"
        assert isinstance(json.loads(call.function.arguments), dict)
        conversation: list[ChatCompletionMessageParam] = [
            prompt,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": call.function.arguments},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call.id, "content": "18 degrees, sunny"},
        ]
        follow_up = await client.chat.completions.create(
            model="quorum:auto",
            messages=conversation,
            tools=[WEATHER],
            tool_choice="none",
        )
    assert follow_up.choices[0].finish_reason == "stop"
    assert follow_up.choices[0].message.content
    assert not follow_up.choices[0].message.tool_calls


async def test_tool_choice_forces_a_call() -> None:
    # The prompt names no tool, so the model would answer in text if it were let to.
    prompt: ChatCompletionMessageParam = {"role": "user", "content": "What is 2+2?"}
    async with front_door() as (_, client):
        free = await client.chat.completions.create(
            model="quorum:auto", messages=[prompt], tools=[WEATHER]
        )
        required = await client.chat.completions.create(
            model="quorum:auto", messages=[prompt], tools=[WEATHER], tool_choice="required"
        )
        named = await client.chat.completions.create(
            model="quorum:auto",
            messages=[prompt],
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        )
    assert free.choices[0].finish_reason == "stop" and not free.choices[0].message.tool_calls
    for forced in (required, named):
        assert forced.choices[0].finish_reason == "tool_calls"
        calls = forced.choices[0].message.tool_calls or []
        assert [c.function.name for c in calls if c.type == "function"] == ["get_weather"]


async def test_streamed_tool_call() -> None:
    async with front_door() as (_, client):
        stream = await client.chat.completions.create(
            model="quorum:auto",
            messages=[{"role": "user", "content": "Use get_weather for Paris"}],
            tools=[WEATHER],
            stream=True,
        )
        names, finish = [], None
        async for chunk in stream:
            for choice in chunk.choices:
                for call in choice.delta.tool_calls or ():
                    assert call.id and call.type == "function" and call.function
                    names.append(call.function.name)
                finish = choice.finish_reason or finish
    assert (names, finish) == (["get_weather"], "tool_calls")


# --- streaming -----------------------------------------------------------------------------


async def test_stream_assembles_the_unary_answer() -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "Explain how a hash map handles collisions"}
    ]
    async with front_door() as (_, client):
        unary = await client.chat.completions.create(model="quorum:auto", messages=messages)
        stream = await client.chat.completions.create(
            model="quorum:auto",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
        text, finish, usage, account, models = "", None, None, None, set()
        async for chunk in stream:
            assert chunk.object == "chat.completion.chunk"
            models.add(chunk.model)
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
            usage = chunk.usage or usage
            account = (chunk.model_extra or {}).get("quorum") or account
    assert text == unary.choices[0].message.content
    assert finish == "stop"
    assert models == {unary.model}
    assert usage is not None and unary.usage is not None
    assert usage.total_tokens == unary.usage.total_tokens
    assert account is not None and account["cost_usd"] > 0 and account["attempts"]


async def test_stream_wire_format() -> None:
    """The bytes themselves: data lines only, usage chunk last, then [DONE]."""
    async with front_door() as (running, _):
        async with aiohttp.ClientSession() as http:
            async with http.post(
                _base_url(running) + "/chat/completions",
                json={
                    "model": "quorum:auto",
                    "messages": MATH,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                },
            ) as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/event-stream")
                assert response.headers["x-quorum-strategy"] == "single"
                assert response.headers["x-quorum-model"] == "flash"
                body = (await response.read()).decode()
    events = body.split("\n\n")
    assert events[-1] == ""
    assert events[-2] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(e.startswith("data: {") for e in events[:-2])
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    assert chunks[-1]["quorum"]["model"] == "flash"
    assert len({c["id"] for c in chunks}) == 1


async def test_stream_without_usage_has_no_usage_field() -> None:
    async with front_door() as (running, _):
        async with aiohttp.ClientSession() as http:
            async with http.post(
                _base_url(running) + "/chat/completions",
                json={"model": "quorum:auto", "messages": MATH, "stream": True},
            ) as response:
                body = (await response.read()).decode()
    chunks = [json.loads(e.removeprefix("data: ")) for e in body.split("\n\n")[:-2]]
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["quorum"]["cost_usd"] > 0


async def test_stream_error_before_the_answer_is_a_plain_http_error() -> None:
    async with front_door(all_failing(sim_config())) as (_, client):
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="quorum:auto", messages=MATH, stream=True)
    assert caught.value.status_code == 503
    assert caught.value.code == "all_attempts_failed"


# --- errors --------------------------------------------------------------------------------


def _tool_turn(
    *, arguments: str = "{}", name: str = "get_weather", call_id: str = "c1"
) -> dict[str, Any]:
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    return {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call_id, "content": "sunny"},
        ]
    }


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"temperature": 3}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"n": 2}, "n"),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {
                "tool_choice": {"type": "function", "function": {"name": "get_tide"}},
                "tools": [WEATHER],
            },
            "tool_choice.function.name",
        ),
        ({"tool_choice": "always", "tools": [WEATHER]}, "tool_choice"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"messages": []}, "messages"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"extra_body": {"frobnicate": True}}, "frobnicate"),
        ({"model": "quorum:auto?strategy=telepathy"}, "model"),
        ({"extra_body": {"quorum": {"priority": "fastest"}}}, "quorum.priority"),
        ({"extra_headers": {"x-quorum-timeout-s": "soon"}}, "x-quorum-timeout-s"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "data:image/png;base64,!!"}}
                        ],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        (_tool_turn(arguments='{"a": NaN}'), "messages[1].tool_calls[0].function.arguments"),
        (_tool_turn(name="функция"), "messages[1].tool_calls[0].function.name"),
        (_tool_turn(call_id="c\n1"), "messages[1].tool_calls[0].id"),
    ],
)
async def test_bad_requests_name_the_param(kwargs: dict[str, Any], param: str) -> None:
    request: dict[str, Any] = {"model": "quorum:auto", "messages": MATH, **kwargs}
    async with front_door() as (_, client):
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(**request)
    err = caught.value
    assert err.status_code == 400
    assert err.param == param
    assert err.type == "invalid_request_error"
    assert param in err.message


async def test_every_violation_is_reported() -> None:
    async with front_door() as (_, client):
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="quorum:auto", messages=MATH, temperature=9, top_p=7
            )
    body = caught.value.body
    assert isinstance(body, dict)
    fields = [v["field"] for v in body["quorum"]["violations"]]
    assert fields == ["temperature", "top_p"]


@pytest.mark.parametrize("model", ["gpt-5-ultra", "quorum:nonsense"])
async def test_unknown_model_is_not_found(model: str) -> None:
    async with front_door() as (_, client):
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(model=model, messages=MATH)
    assert (caught.value.code, caught.value.param) == ("model_not_found", "model")
    assert "quorum:auto" in caught.value.message


async def test_forced_strategy_is_the_planners_to_take() -> None:
    async with front_door() as (_, client):
        raw = await client.chat.completions.with_raw_response.create(
            model="quorum:auto?strategy=single", messages=MATH
        )
    assert raw.headers["x-quorum-strategy"] == "single"


async def test_overload_is_429_with_retry_after() -> None:
    data = sim_config(server={"max_concurrent_rpcs": 1})
    data = with_model(data, "flash", simulated={"latency_ms_p50": 400, "latency_ms_p95": 400})
    async with front_door(data) as (_, client):
        slow = asyncio.create_task(client.chat.completions.create(model="flash", messages=MATH))
        await asyncio.sleep(0.1)
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="flash", messages=MATH)
        assert (await slow).choices[0].message.content
    err = caught.value
    assert err.status_code == 429
    assert err.response.headers["Retry-After"] == "1"
    assert err.response.headers["retry-after-ms"] == "1000"
    assert err.code == "overloaded"


async def test_all_providers_failing_is_503_with_every_attempt() -> None:
    async with front_door(all_failing(sim_config())) as (_, client):
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="quorum:auto", messages=MATH)
    err = caught.value
    assert err.status_code == 503
    assert (err.type, err.code) == ("server_error", "all_attempts_failed")
    body = err.body
    assert isinstance(body, dict)
    assert [a["error_reason"] for a in body["quorum"]["attempts"]] == ["PROVIDER_UNAVAILABLE"] * 3
    assert err.response.headers["x-quorum-request-id"] == body["quorum"]["request_id"]


async def test_deadline_header_gives_504() -> None:
    data = sim_config()
    for name in list(data["models"]):
        data = with_model(data, name, simulated={"latency_ms_p50": 2000, "latency_ms_p95": 2000})
    async with front_door(data) as (_, client):
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(
                model="quorum:auto", messages=MATH, extra_headers={"x-quorum-timeout-s": "0.2"}
            )
    assert caught.value.status_code == 504
    assert caught.value.code == "deadline_exceeded"


async def test_http_layer_errors_are_openai_shaped() -> None:
    async with front_door() as (running, _):
        base = _base_url(running)
        async with aiohttp.ClientSession() as http:
            async with http.post(base + "/completions", json={}) as response:
                assert response.status == 404
                assert (await response.json())["error"]["code"] == "unknown_url"
            async with http.get(base + "/chat/completions") as response:
                assert response.status == 405
                assert (await response.json())["error"]["type"] == "invalid_request_error"
            async with http.post(base + "/chat/completions", data=b"{not json") as response:
                assert response.status == 400
                assert (await response.json())["error"]["param"] == "body"


# --- provider faults through the real OpenAI adapter ----------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "status", "code"),
    [
        ("error-500", 503, "all_attempts_failed"),
        ("error-401", 503, "all_attempts_failed"),
        ("malformed", 503, "all_attempts_failed"),
        ("ratelimit-3", 429, "upstream_throttled"),
        ("error-400", 400, "upstream_rejected"),
    ],
)
async def test_provider_faults_are_never_a_bare_500(
    behaviour: str, status: int, code: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_OPENAI_KEY", "sk-test")
    async with openai_server.serve() as fake:
        data: dict[str, Any] = {
            "providers": {"up": {"kind": "openai", "base_url": fake.base_url, **KEY}},
            "tiers": ["only"],
            "models": {
                "upstream": {
                    "provider": "up",
                    "model_id": behaviour,
                    "tier": "only",
                    "input_usd_per_mtok": 1.0,
                    "output_usd_per_mtok": 2.0,
                }
            },
        }
        async with front_door(data) as (_, client):
            with pytest.raises(openai.APIStatusError) as caught:
                await client.chat.completions.create(model="upstream", messages=MATH)
    assert (caught.value.status_code, caught.value.code) == (status, code)
    if status == 429:
        assert isinstance(caught.value, openai.RateLimitError)
        assert caught.value.response.headers["Retry-After"] == "3"


async def test_real_adapter_answer_passes_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_OPENAI_KEY", "sk-test")
    async with openai_server.serve() as fake:
        data: dict[str, Any] = {
            "providers": {"up": {"kind": "openai", "base_url": fake.base_url, **KEY}},
            "tiers": ["only"],
            "models": {
                "upstream": {
                    "provider": "up",
                    "model_id": "ok",
                    "tier": "only",
                    "input_usd_per_mtok": 1.0,
                    "output_usd_per_mtok": 2.0,
                }
            },
        }
        async with front_door(data) as (_, client):
            unary = await client.chat.completions.create(model="quorum:auto", messages=MATH)
            stream = await client.chat.completions.create(
                model="quorum:auto", messages=MATH, stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert unary.choices[0].message.content == text == OK_TEXT
    assert unary.model == "upstream"


# --- tenants, auth, budgets ----------------------------------------------------------------

TOKEN = "tok-acme-0123456789"


def tenant_config(budget_usd: float | None = None) -> dict[str, Any]:
    data = sim_config()
    data["tenants"] = {
        "acme": {
            "token_sha256": hashlib.sha256(TOKEN.encode()).hexdigest(),
            "models": ["flash", "flash-b"],
            "budget": {"daily_usd": budget_usd},
        }
    }
    return data


async def test_bearer_token_is_the_tenant() -> None:
    async with front_door(tenant_config()) as (running, anonymous):
        acme = openai.AsyncOpenAI(api_key=TOKEN, base_url=_base_url(running), max_retries=0)
        wrong = openai.AsyncOpenAI(api_key="tok-nope", base_url=_base_url(running), max_retries=0)
        try:
            ok = await acme.chat.completions.create(model="quorum:auto", messages=MATH)
            with pytest.raises(openai.AuthenticationError) as missing:
                await anonymous.chat.completions.create(model="quorum:auto", messages=MATH)
            with pytest.raises(openai.AuthenticationError) as unknown:
                await wrong.chat.completions.create(model="quorum:auto", messages=MATH)
            with pytest.raises(openai.PermissionDeniedError) as denied:
                await acme.chat.completions.create(model="frontier", messages=MATH)
            with pytest.raises(openai.AuthenticationError):
                await wrong.models.list()
            visible = [m.id for m in (await acme.models.list()).data]
        finally:
            await acme.close()
            await wrong.close()
    assert (ok.model_extra or {})["quorum"]["model"] in ("flash", "flash-b")
    assert (missing.value.status_code, missing.value.code) == (401, "unauthenticated")
    assert unknown.value.type == "authentication_error"
    assert (denied.value.status_code, denied.value.code) == (403, "permission_denied")
    assert "frontier" in denied.value.message
    assert "frontier" not in visible and "quorum:premium" not in visible
    assert {"quorum:auto", "flash", "flash-b"} <= set(visible)


async def test_two_authorization_headers_are_401() -> None:
    headers = [("Authorization", f"Bearer {TOKEN}"), ("Authorization", "Bearer tok-other")]
    body = {"model": "quorum:auto", "messages": MATH}
    async with front_door(tenant_config()) as (running, _), aiohttp.ClientSession() as http:
        url = f"{_base_url(running)}/chat/completions"
        async with http.post(url, json=body, headers=headers) as response:
            status, error = response.status, (await response.json())["error"]
    assert (status, error["code"]) == (401, "unauthenticated")
    assert "send exactly one" in error["message"]


async def test_spent_budget_is_429_insufficient_quota() -> None:
    async with front_door(tenant_config(budget_usd=0.000_000_1)) as (running, _):
        acme = openai.AsyncOpenAI(api_key=TOKEN, base_url=_base_url(running), max_retries=0)
        try:
            with pytest.raises(openai.RateLimitError) as caught:
                await acme.chat.completions.create(model="quorum:auto", messages=MATH)
        finally:
            await acme.close()
    err = caught.value
    assert (err.type, err.code) == ("insufficient_quota", "budget_exhausted")
    assert int(err.response.headers["Retry-After"]) >= 1


def upstream_config(base_url: str, *behaviours: str) -> dict[str, Any]:
    """Models ``up-0``, ``up-1``, ... on the fake OpenAI server, one per behaviour."""
    return {
        "providers": {"up": {"kind": "openai", "base_url": base_url, **KEY}},
        "tiers": ["only"],
        "models": {
            f"up-{i}": {
                "provider": "up",
                "model_id": behaviour,
                "tier": "only",
                "input_usd_per_mtok": 1.0 + i,
                "output_usd_per_mtok": 2.0 + i,
            }
            for i, behaviour in enumerate(behaviours)
        },
    }


async def test_stream_is_forwarded_as_it_arrives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_OPENAI_KEY", "sk-test")
    async with openai_server.serve() as fake:
        async with front_door(upstream_config(fake.base_url, "drip-40")) as (_, client):
            stream = await client.chat.completions.create(model="up-0", messages=MATH, stream=True)
            loop = asyncio.get_running_loop()
            arrivals: list[float] = []
            text = ""
            async for chunk in stream:
                for choice in chunk.choices:
                    if choice.delta.content:
                        arrivals.append(loop.time())
                        text += choice.delta.content
    assert text == OK_TEXT
    assert len(arrivals) > 2
    assert arrivals[-1] - arrivals[0] > 0.05  # pieces came apart, not in one buffer


async def _raw_stream(base_url: str, model: str) -> tuple[str, dict[str, Any]]:
    """Stream with a plain HTTP client: the text the chunks carried, and the last event."""
    async with aiohttp.ClientSession() as http:
        async with http.post(
            base_url + "/chat/completions",
            json={"model": model, "messages": MATH, "stream": True},
        ) as response:
            assert response.status == 200
            body = (await response.read()).decode()
    assert body.endswith("\n\n")
    events = [json.loads(e.removeprefix("data: ")) for e in body.split("\n\n")[:-1]]
    text = "".join(c["delta"].get("content") or "" for e in events for c in e.get("choices", ()))
    return text, events[-1]


async def _read_all(stream: openai.AsyncStream[Any], into: list[str]) -> None:
    async for chunk in stream:
        into.extend(c.delta.content or "" for c in chunk.choices)


async def test_stream_broken_mid_way_ends_with_an_error_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_OPENAI_KEY", "sk-test")
    async with openai_server.serve() as fake:
        data = upstream_config(fake.base_url, "drop-mid-stream")
        async with front_door(data) as (running, client):
            stream = await client.chat.completions.create(model="up-0", messages=MATH, stream=True)
            pieces: list[str] = []
            with pytest.raises(openai.APIError) as caught:
                await _read_all(stream, pieces)
            text, last = await _raw_stream(_base_url(running), "up-0")
    assert "".join(pieces) == text and OK_TEXT.startswith(text) and text != OK_TEXT
    assert caught.value.code == "stream_interrupted"
    assert last["error"]["type"] == "server_error"  # an error event, and no [DONE]


async def test_a_broken_stream_is_not_restarted_on_another_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_OPENAI_KEY", "sk-test")
    async with openai_server.serve() as fake:
        data = upstream_config(fake.base_url, "drop-mid-stream", "ok")
        async with front_door(data) as (running, _):
            text, last = await _raw_stream(_base_url(running), "up-0")
        requests = fake.server.stats.requests
    assert OK_TEXT.startswith(text) and text != OK_TEXT  # the first model's prefix only
    assert last["error"]["code"] == "stream_interrupted"
    assert "cannot restart" in last["error"]["message"]
    assert requests == 1  # up-1, next in line, was never called (nor paid for)


# --- models --------------------------------------------------------------------------------


async def test_models_list_and_retrieve() -> None:
    async with front_door() as (_, client):
        page = await client.models.list()
        one = await client.models.retrieve("mid")
        route = await client.models.retrieve("quorum:auto")
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("gpt-4")
    ids = [m.id for m in page.data]
    assert ids == [
        "quorum:auto",
        "quorum:autocomplete",
        "quorum:legal_review",
        "quorum:cheap",
        "quorum:mid",
        "quorum:premium",
        "flash",
        "flash-b",
        "mid",
        "frontier",
    ]
    assert all(m.object == "model" and m.created > 0 for m in page.data)
    assert one.owned_by == "sim"
    extra = one.model_extra or {}
    assert extra["quorum"]["tier"] == "mid"
    assert "vision" in extra["quorum"]["capabilities"]
    assert route.owned_by == "quorum"


# --- lifecycle -----------------------------------------------------------------------------


async def test_drain_finishes_in_flight_http_and_refuses_new_connections() -> None:
    slow = {"latency_ms_p50": 500, "latency_ms_p95": 500}
    async with front_door(with_model(sim_config(), "flash", simulated=slow)) as (running, client):
        request = client.chat.completions.create(model="flash", messages=MATH)
        in_flight = asyncio.create_task(request)
        await asyncio.sleep(0.15)
        drained = asyncio.create_task(running.drain(5))
        await asyncio.sleep(0.05)
        fresh = openai.AsyncOpenAI(api_key="x", base_url=_base_url(running), max_retries=0)
        with pytest.raises(openai.APIConnectionError):
            await fresh.models.list()
        await fresh.close()
        assert (await in_flight).choices[0].message.content == "The answer is 391."
        await drained


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_http(base_url: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(base_url + "/models") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{base_url} never answered")
            await asyncio.sleep(0.05)


async def test_serve_flag_starts_http_and_sigterm_drains_it(tmp_path: Path) -> None:
    slow = {"latency_ms_p50": 800, "latency_ms_p95": 800}
    data = with_model(sim_config(server={"grace_period_s": 5}), "flash", simulated=slow)
    config = tmp_path / "quorum.yaml"
    config.write_text(yaml.safe_dump(data))
    http_port = _free_port()
    base_url = f"http://127.0.0.1:{http_port}/v1"
    proc = subprocess.Popen(
        [
            str(QUORUM),
            "serve",
            "--config",
            str(config),
            "--address",
            f"127.0.0.1:{_free_port()}",
            "--http-address",
            f"127.0.0.1:{http_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        await _wait_http(base_url)
        client = openai.AsyncOpenAI(api_key="x", base_url=base_url, max_retries=0)
        in_flight = asyncio.create_task(
            client.chat.completions.create(model="flash", messages=MATH)
        )
        await asyncio.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        completion = await in_flight
        await client.close()
        assert completion.choices[0].message.content == "The answer is 391."
        assert await asyncio.to_thread(proc.wait, 10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_bad_http_address_is_refused_before_serving() -> None:
    result = subprocess.run(
        [str(QUORUM), "serve", "--address", "127.0.0.1:0", "--http-address", "nowhere"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "expected HOST:PORT" in result.stderr
    assert "Traceback" not in result.stderr


async def test_listeners_share_a_port_with_reuse_port() -> None:
    router = Router(parse_config(sim_config()))
    address = f"127.0.0.1:{_free_port()}"
    doors = [HttpFrontDoor(router, address, reuse_port=True) for _ in range(2)]
    try:
        for door in doors:
            await door.start()
        assert doors[0].port == doors[1].port
    finally:
        for door in doors:
            await door.stop(0.1)
        await router.close()


# --- the npm SDK ---------------------------------------------------------------------------


def _npm_ci() -> None:
    """``npm ci`` unless node_modules already matches the lock file."""
    lock = NODE_DIR / "package-lock.json"
    stamp = NODE_DIR / "node_modules" / ".lock-sha256"
    want = hashlib.sha256(lock.read_bytes()).hexdigest()
    if stamp.is_file() and stamp.read_text().strip() == want:
        return
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=NODE_DIR,
        check=True,
        capture_output=True,
        timeout=240,
    )
    stamp.write_text(want + "\n")


@pytest.mark.slow
async def test_openai_npm_sdk() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the npm SDK check")
    await asyncio.to_thread(_npm_ci)
    async with front_door() as (running, _):
        result = await asyncio.to_thread(
            subprocess.run,
            ["node", str(NODE_DIR / "openai_sdk_check.mjs")],
            env={**os.environ, "QUORUM_BASE_URL": _base_url(running)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["unary"]["content"] == report["stream"]["content"] == "The answer is 144."
    assert report["errors"]["bad_request"] == {
        "status": 400,
        "param": "temperature",
        "code": "invalid_request",
    }
    assert report["errors"]["not_found"]["status"] == 404
    assert "quorum:auto" in report["models"]
