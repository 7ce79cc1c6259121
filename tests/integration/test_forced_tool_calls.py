"""A forced tool call that a model does not make: a failed attempt, paid for, and the
next candidate is asked; a stream that ends without it falls over like a broken one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from quorum.client import QuorumError
from quorum.route.v1 import types_pb2 as pb
from tests.conftest import running_server
from tests.fakes import openai_server
from tests.fakes.common import Running
from tests.faults.upstreams import collect, config, kinds, outcomes, provider

TOOLS = [pb.Tool(name="get_weather"), pb.Tool(name="get_tide")]
REQUIRED = pb.GenerationParams(
    tools=TOOLS, tool_choice=pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_REQUIRED)
)
NAMED = pb.GenerationParams(
    tools=TOOLS, tool_choice=pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_TOOL, tool_name="get_tide")
)


@pytest.fixture
async def oa() -> AsyncIterator[Running]:
    async with openai_server.serve() as running:
        yield running


@pytest.mark.parametrize(("params", "called"), [(REQUIRED, "get_weather"), (NAMED, "get_tide")])
async def test_a_model_ignoring_the_forced_call_fails_over(
    oa: Running, params: pb.GenerationParams, called: str
) -> None:
    cfg = config({"oa": provider(oa.base_url)}, [("deaf", "oa", "no-tools"), ("good", "oa", "ok")])
    async with running_server(cfg) as (_, client):
        r = await client.route("Weather in Paris?", params=params)
    assert r.model == "good"
    assert [c.name for c in r.tool_calls] == [called]
    ignored, answered = r.attempts
    assert outcomes(r.attempts) == [("deaf", "FAILED"), ("good", "SUCCEEDED")]
    assert ignored.error_reason == "TOOL_CALL_MISSING"
    assert "without" in ignored.reason and "tool" in ignored.reason
    assert ignored.usage.output_tokens > 0 and ignored.cost_usd > 0  # it was paid for
    assert r.cost_usd == pytest.approx(ignored.cost_usd + answered.cost_usd)
    assert oa.server.stats.requests == 2


async def test_free_choice_takes_a_text_answer(oa: Running) -> None:
    cfg = config({"oa": provider(oa.base_url)}, [("deaf", "oa", "no-tools"), ("good", "oa", "ok")])
    async with running_server(cfg) as (_, client):
        r = await client.route("Weather in Paris?", params=pb.GenerationParams(tools=TOOLS))
    assert (r.model, len(r.tool_calls), r.finish_reason) == ("deaf", 0, "stop")


async def test_no_model_making_the_call_is_unavailable_with_the_attempts(oa: Running) -> None:
    cfg = config({"oa": provider(oa.base_url)}, [("deaf", "oa", "no-tools")])
    async with running_server(cfg) as (running, client):
        with pytest.raises(QuorumError) as info:
            await client.route("Weather in Paris?", params=REQUIRED)
        health = running.router.breakers.snapshot()["oa"]
    assert info.value.code is grpc.StatusCode.UNAVAILABLE
    (attempt,) = info.value.attempts
    assert attempt.error_reason == "TOOL_CALL_MISSING" and attempt.cost_usd > 0
    assert health.failure_count == 0  # the provider answered: its breaker is not charged


async def test_a_stream_without_the_forced_call_restarts_on_the_next_model(oa: Running) -> None:
    cfg = config({"oa": provider(oa.base_url)}, [("deaf", "oa", "no-tools"), ("good", "oa", "ok")])
    async with running_server(cfg) as (_, client):
        events = await collect(client, "Weather in Paris?", params=REQUIRED)
    order = kinds(events)
    assert "fallback" in order and order[-1] == "final"
    final = events[-1].final
    assert final.model == "good" and [c.name for c in final.tool_calls] == ["get_weather"]
    assert outcomes(final.attempts) == [("deaf", "FAILED"), ("good", "SUCCEEDED")]
    assert final.attempts[0].error_reason == "TOOL_CALL_MISSING"
