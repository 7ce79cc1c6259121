"""Routing through a real server over a real channel with the generated Python client."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from quorum.client import QuorumError, user
from quorum.route.v1 import types_pb2 as pb
from quorum.server.config import parse_config
from tests.conftest import running_server, sim_config, with_model


async def test_route_returns_answer_and_full_account() -> None:
    async with running_server(parse_config(sim_config())) as (_, client):
        r = await client.route("What is 17 * 23?", request_id="req-42")
    assert r.request_id == "req-42"
    assert r.content == "The answer is 391."
    assert (r.model, r.provider, r.strategy) == ("flash", "sim", pb.STRATEGY_SINGLE)
    assert r.classification.task == "math"
    assert r.classification.difficulty == pb.DIFFICULTY_LOW
    assert [s.role for s in r.plan.stages] == ["primary", "fallback"]
    assert r.plan.reasons
    (attempt,) = r.attempts
    assert attempt.outcome == pb.ATTEMPT_OUTCOME_SUCCEEDED
    assert attempt.usage.input_tokens > 0 and attempt.cost_usd > 0
    assert r.cost_usd == pytest.approx(attempt.cost_usd)
    assert r.baseline_model == "frontier"
    assert r.baseline_cost_usd > r.cost_usd
    assert r.timings.total_ms >= r.timings.execute_ms > 0
    assert r.simulated


async def test_request_id_generated_when_missing() -> None:
    async with running_server(parse_config(sim_config())) as (_, client):
        r = await client.route("hello")
    assert len(r.request_id) == 32


async def test_fails_over_to_next_candidate() -> None:
    data = with_model(sim_config(), "flash", simulated={"failure_rate": 1.0})
    async with running_server(parse_config(data)) as (_, client):
        r = await client.route("hello")
    assert r.model == "flash-b"
    failed, ok = r.attempts
    assert (failed.model, failed.outcome, failed.error_reason) == (
        "flash",
        pb.ATTEMPT_OUTCOME_FAILED,
        "PROVIDER_UNAVAILABLE",
    )
    assert "503" in failed.reason
    assert ok.outcome == pb.ATTEMPT_OUTCOME_SUCCEEDED


async def test_all_failing_is_unavailable_with_every_attempt() -> None:
    data = sim_config()
    for name in data["models"]:
        data = with_model(data, name, simulated={"failure_rate": 1.0})
    async with running_server(parse_config(data)) as (_, client):
        with pytest.raises(QuorumError) as info:
            await client.route("hello")
    err = info.value
    assert err.code is grpc.StatusCode.UNAVAILABLE
    assert err.reason == "ALL_ATTEMPTS_FAILED"
    assert [a.model for a in err.attempts] == ["flash", "flash-b", "mid"]
    assert err.plan is not None and err.plan.strategy == pb.STRATEGY_SINGLE  # as executed


async def test_open_breaker_is_skipped_and_shown_in_plan() -> None:
    data = with_model(sim_config(), "flash", simulated={"failure_rate": 1.0})
    data["providers"]["sim"]["breaker"] = {"fail_max": 2, "reset_timeout_s": 60}
    async with running_server(parse_config(data)) as (_, client):
        for _ in range(2):
            await client.route("hello")
        plan = await client.plan("hello")
        states = {p.provider: p.breaker_state for p in plan.providers}
        assert states["sim"] == pb.BREAKER_STATE_OPEN
        assert plan.plan.stages[0].candidates[0].model == "flash-b"
        models = await client.list_models()
        assert {m.name: m.breaker_state for m in models.models}["mid"] == pb.BREAKER_STATE_OPEN


async def test_deadline_bounds_downstream_work() -> None:
    data = sim_config()
    for name in data["models"]:
        data = with_model(data, name, simulated={"latency_ms_p50": 3000, "latency_ms_p95": 3000})
    async with running_server(parse_config(data)) as (_, client):
        for _ in range(5):
            with pytest.raises(QuorumError) as info:
                await client.route("hello", timeout=0.3)
            # The server's answer, not the client's own timer: it finishes a margin
            # before the deadline, so the caller learns what was tried.
            assert info.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
            assert info.value.reason == "DEADLINE_EXCEEDED"
            assert info.value.attempts
            # ...and which model the time went on.
            assert f"last attempt: {info.value.attempts[-1].model}" in info.value.message
            events = [e async for e in client.route_stream("hello", timeout=0.3)]
            assert events[-1].error.code == "DEADLINE_EXCEEDED" and events[-1].error.attempts


async def test_the_servers_deadline_cuts_a_longer_callers_and_is_not_called_the_callers() -> None:
    data = sim_config()
    for name in data["models"]:
        data = with_model(data, name, simulated={"latency_ms_p50": 3000, "latency_ms_p95": 3000})
    data["server"] = {"default_deadline_s": 0.3}
    async with running_server(parse_config(data)) as (_, client):
        with pytest.raises(QuorumError) as info:
            await client.route("hello", timeout=30)
    assert info.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "caller" not in info.value.message
    if info.value.attempts:  # (a machine that stalls may leave no time for one)
        assert "the request's deadline" in info.value.message


async def test_no_candidate_is_failed_precondition() -> None:
    async with running_server(parse_config(sim_config())) as (_, client):
        hints = pb.RoutingHints(sensitivity=pb.SENSITIVITY_RESTRICTED)
        with pytest.raises(QuorumError) as info:
            await client.route("hello", hints=hints)
    assert info.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.reason == "NO_CANDIDATE"
    assert "restricted" in info.value.message


async def test_plan_runs_nothing_and_explains() -> None:
    async with running_server(parse_config(sim_config())) as (_, client):
        p = await client.plan(
            "Design a distributed rate limiter and analyze the trade-offs step by step"
        )
    assert p.classification.difficulty == pb.DIFFICULTY_HIGH
    assert p.plan.stages[0].candidates[0].model == "frontier"
    assert all(c.simulated for s in p.plan.stages for c in s.candidates)
    assert p.plan.estimated_cost_max_usd >= p.plan.estimated_cost_min_usd > 0
    assert any(r.code == "DIFFICULTY_TIER" for r in p.plan.reasons)
    assert p.baseline_model == "frontier"


async def test_list_models() -> None:
    async with running_server(parse_config(sim_config())) as (_, client):
        all_models = await client.list_models()
        cheap = await client.list_models(tier="cheap")
        with pytest.raises(QuorumError) as info:
            await client.list_models(tier="gold")
    assert list(all_models.tiers) == ["cheap", "mid", "premium"]
    assert [m.name for m in cheap.models] == ["flash", "flash-b"]
    frontier = next(m for m in all_models.models if m.name == "frontier")
    assert frontier.simulated and frontier.output_usd_per_mtok == 25.0
    assert pb.CAPABILITY_VISION in frontier.capabilities
    assert info.value.field_violations[0].field == "tier"


async def test_health_and_reflection() -> None:
    async with running_server(parse_config(sim_config())) as (running, _):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "quorum.route.v1.RouteService"):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            call = stub.ServerReflectionInfo()
            await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            reply = await call.read()
            await call.done_writing()
            names = {s.name for s in reply.list_services_response.service}
    assert {"quorum.route.v1.RouteService", "grpc.health.v1.Health"} <= names


async def test_sync_client_works_too() -> None:
    from quorum.client import QuorumClient

    async with running_server(parse_config(sim_config())) as (running, _):
        import asyncio

        def call() -> pb.RouteResponse:
            with QuorumClient(f"127.0.0.1:{running.port}", timeout=5) as sync:
                return sync.route([user("hello")])

        r = await asyncio.to_thread(call)
    assert r.content


async def test_consensus_that_runs_out_of_time_is_deadline_exceeded() -> None:
    data = sim_config()
    for name in data["models"]:
        data = with_model(data, name, simulated={"latency_ms_p50": 2000, "latency_ms_p95": 2000})
    async with running_server(parse_config(data)) as (_, client):
        with pytest.raises(QuorumError) as info:
            await client.route(
                "What is 6 * 7?",
                hints=pb.RoutingHints(strategy=pb.STRATEGY_CONSENSUS_MAJORITY),
                timeout=0.3,
            )
    assert info.value.code is grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.parametrize(
    ("choice", "called"),
    [
        (pb.ToolChoice(), []),
        (pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_REQUIRED), ["get_weather"]),
        (pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_TOOL, tool_name="get_tide"), ["get_tide"]),
    ],
    ids=["auto", "required", "named"],
)
async def test_tool_choice_forces_a_call(choice: pb.ToolChoice, called: list[str]) -> None:
    params = pb.GenerationParams(
        tools=[pb.Tool(name="get_weather"), pb.Tool(name="get_tide")], tool_choice=choice
    )
    async with running_server(parse_config(sim_config())) as (_, client):
        r = await client.route("What is 17 * 23?", params=params)  # names no tool
    assert [c.name for c in r.tool_calls] == called
    assert r.finish_reason == ("tool_calls" if called else "stop")


async def test_tool_choice_none_offers_no_tools() -> None:
    data = sim_config()
    for name in list(data["models"]):
        data = with_model(data, name, capabilities=["streaming"])  # no model has tools
    tools = [pb.Tool(name="get_weather")]
    none = pb.GenerationParams(
        tools=tools, tool_choice=pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_NONE)
    )
    async with running_server(parse_config(data)) as (_, client):
        r = await client.route("Use get_weather for Paris", params=none)
        with pytest.raises(QuorumError) as info:  # offered tools need the capability
            await client.route("Use get_weather for Paris", params=pb.GenerationParams(tools=tools))
    assert not r.tool_calls and r.content
    assert info.value.code is grpc.StatusCode.FAILED_PRECONDITION


async def test_a_forced_model_that_cannot_take_the_request_is_refused_not_swapped() -> None:
    # flash lacks vision: the request must not quietly go to a dearer model instead.
    hints = pb.RoutingHints(model="flash", required_capabilities=[pb.CAPABILITY_VISION])
    async with running_server(parse_config(sim_config())) as (_, client):
        with pytest.raises(QuorumError) as info:
            await client.route("Describe the image", hints=hints)
        unforced = await client.route(
            "Describe the image",
            hints=pb.RoutingHints(required_capabilities=[pb.CAPABILITY_VISION]),
        )
    assert info.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert "hints.model: flash cannot take this request: lacks vision" in info.value.message
    assert unforced.model in ("mid", "frontier")
