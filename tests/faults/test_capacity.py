"""Capability-aware fallback, load-balanced deployments with their own breakers, hedged
requests and provider limits — through the real server and the fake vendor APIs."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from quorum.client import QuorumError
from quorum.route.v1 import types_pb2 as pb
from tests.conftest import running_server
from tests.fakes.common import Behaviour, Running
from tests.faults.upstreams import config, outcomes, provider, route_or_error


async def test_a_tools_request_fails_over_only_to_models_with_tools(
    oa: Running, oa2: Running
) -> None:
    cfg = config(
        {"oa": provider(oa.base_url), "plain": provider(oa2.base_url)},
        {
            "tooled-a": {"provider": "oa", "model_id": "error-503", "capabilities": ["tools"]},
            "no-tools": {"provider": "plain", "model_id": "ok", "capabilities": ["streaming"]},
            "tooled-b": {"provider": "oa", "model_id": "tools", "capabilities": ["tools"]},
        },
    )
    params = pb.GenerationParams(tools=[pb.Tool(name="weather", parameters_json="{}")])
    async with running_server(cfg) as (_, client):
        r = await route_or_error(client, params=params)
        plan = await client.plan("Hello there", params=params)
    assert isinstance(r, pb.RouteResponse) and r.model == "tooled-b"
    assert [c.name for c in r.tool_calls] == ["weather"]
    assert outcomes(r.attempts) == [("tooled-a", "FAILED"), ("tooled-b", "SUCCEEDED")]
    assert "no-tools" not in {c.model for s in plan.plan.stages for c in s.candidates}
    assert oa2.server.stats.requests == 0  # the cheaper model without tools was never asked


async def test_a_vision_request_with_no_healthy_vision_model_is_unavailable(
    oa: Running, oa2: Running
) -> None:
    cfg = config(
        {"oa": provider(oa.base_url), "plain": provider(oa2.base_url)},
        {
            "seeing": {"provider": "oa", "model_id": "error-500", "capabilities": ["vision"]},
            "blind": {"provider": "plain", "model_id": "ok", "capabilities": ["streaming"]},
        },
    )
    image = pb.Message(
        role=pb.ROLE_USER,
        content="What is in the picture?",
        parts=[pb.ContentPart(image=pb.ImagePart(url="https://example.com/cat.png"))],
    )
    async with running_server(cfg) as (_, client):
        r = await route_or_error(client, [image])
    assert isinstance(r, QuorumError) and r.code is grpc.StatusCode.UNAVAILABLE
    assert [a.model for a in r.attempts] == ["seeing"]
    assert oa2.server.stats.requests == 0


async def test_a_failing_deployment_trips_its_own_breaker_and_the_other_serves(
    oa: Running, oa2: Running
) -> None:
    cfg = config(
        {
            "east": provider(oa.base_url, breaker={"fail_max": 3, "reset_timeout_s": 60}),
            "west": provider(oa2.base_url),
        },
        {
            "llama": {
                "deployments": [
                    {"provider": "east", "model_id": "error-503", "weight": 5},
                    {"provider": "west", "model_id": "ok", "weight": 1},
                ]
            }
        },
    )
    async with running_server(cfg) as (_, client):
        results = [await route_or_error(client) for _ in range(12)]
        plan = await client.plan("Hello there")
    assert all(isinstance(r, pb.RouteResponse) and r.provider == "west" for r in results)
    states = {p.provider: p.breaker_state for p in plan.providers}
    assert states["east/error-503"] == pb.BREAKER_STATE_OPEN
    assert states["west/ok"] == pb.BREAKER_STATE_CLOSED
    assert states["east"] == pb.BREAKER_STATE_CLOSED  # the provider's own breaker is untouched
    assert oa.server.stats.requests == 3  # then east was skipped


async def test_weighted_deployments_share_the_load(oa: Running, oa2: Running) -> None:
    cfg = config(
        {"east": provider(oa.base_url), "west": provider(oa2.base_url)},
        {
            "llama": {
                "deployments": [
                    {"provider": "east", "model_id": "ok", "weight": 3},
                    {"provider": "west", "model_id": "ok", "weight": 1},
                ]
            }
        },
    )
    async with running_server(cfg) as (_, client):
        await asyncio.gather(*(client.route("Hello there") for _ in range(80)))
    east, west = oa.server.stats.requests, oa2.server.stats.requests
    assert east + west == 80
    assert 0.6 < east / 80 < 0.9


async def test_hedged_request_answers_from_the_next_candidate_and_cancels_the_slow_one(
    oa: Running, oa2: Running
) -> None:
    cfg = config(
        {"slow": provider(oa.base_url), "fast": provider(oa2.base_url)},
        {
            "primary": {"provider": "slow", "model_id": "slow-1500", "hedge": {"delay_ms": 60}},
            "backup": {"provider": "fast", "model_id": "ok"},
        },
    )
    async with running_server(cfg) as (_, client):
        t0 = time.monotonic()
        r = await route_or_error(client)
        elapsed = time.monotonic() - t0
        for _ in range(50):
            if oa.server.stats.client_disconnects:
                break
            await asyncio.sleep(0.02)
    assert isinstance(r, pb.RouteResponse) and r.model == "backup"
    assert elapsed < 0.6
    assert [(a.model, a.role) for a in r.attempts] == [("backup", "hedge"), ("primary", "primary")]
    loser = r.attempts[1]
    assert loser.outcome == pb.ATTEMPT_OUTCOME_CANCELLED
    assert oa.server.stats.client_disconnects == 1  # the loser's upstream call was cancelled
    # ...but it was sent: its prompt is in the account, as the provider may bill it
    assert loser.usage.input_tokens > 0 and loser.cost_usd > 0
    assert r.cost_usd == pytest.approx(r.attempts[0].cost_usd + loser.cost_usd)


async def test_a_hedge_that_wins_keeps_the_cancelled_calls_earlier_attempts(
    oa: Running, oa2: Running
) -> None:
    # The primary fails once and retries; the hedge answers while the retry waits. All
    # three requests went upstream, so all three are in the account.
    cfg = config(
        {
            "slow": provider(oa.base_url, retry={"max_retries": 1, "backoff_base_s": 0.0}),
            "fast": provider(oa2.base_url),
        },
        {
            "primary": {"provider": "slow", "model_id": "ok", "hedge": {"delay_ms": 150}},
            "backup": {"provider": "fast", "model_id": "ok"},
        },
    )
    oa.server.script.extend([Behaviour.parse("error-503"), Behaviour.parse("slow-2000")])
    async with running_server(cfg) as (_, client):
        r = await route_or_error(client)
    assert isinstance(r, pb.RouteResponse) and r.model == "backup"
    assert oa.server.stats.requests + oa2.server.stats.requests == 3
    assert [(a.model, a.role, a.outcome) for a in r.attempts] == [
        ("backup", "hedge", pb.ATTEMPT_OUTCOME_SUCCEEDED),
        ("primary", "primary", pb.ATTEMPT_OUTCOME_FAILED),
        ("primary", "primary", pb.ATTEMPT_OUTCOME_CANCELLED),
    ]
    assert r.attempts[1].error_reason == "PROVIDER_UNAVAILABLE"


async def test_limits_shed_to_the_next_provider_then_resource_exhausted(
    oa: Running, oa2: Running
) -> None:
    limits = {"max_concurrency": 1, "max_queue": 0}
    cfg = config(
        {"a": provider(oa.base_url, limits=limits), "b": provider(oa2.base_url, limits=limits)},
        [("first", "a", "slow-300"), ("second", "b", "slow-300")],
    )
    async with running_server(cfg) as (_, client):
        results = await asyncio.gather(*(route_or_error(client) for _ in range(5)))
    answers = [r for r in results if isinstance(r, pb.RouteResponse)]
    errors = [r for r in results if isinstance(r, QuorumError)]
    assert sorted(a.model for a in answers) == ["first", "second"]
    assert len(errors) == 3
    for e in errors:
        assert e.code is grpc.StatusCode.RESOURCE_EXHAUSTED and e.reason == "UPSTREAM_THROTTLED"
        assert e.retry_after_s is not None and e.retry_after_s > 0
    assert oa.server.stats.requests == oa2.server.stats.requests == 1  # never over the limit


async def test_a_short_queue_absorbs_a_burst(oa: Running) -> None:
    limits = {"max_concurrency": 2, "max_queue": 8, "max_queue_wait_s": 2}
    cfg = config({"a": provider(oa.base_url, limits=limits)}, [("only", "a", "slow-50")])
    async with running_server(cfg) as (running, client):
        results = await asyncio.gather(*(route_or_error(client) for _ in range(8)))
        assert running.router.resilience.limiters["a"].in_flight == 0
    assert all(isinstance(r, pb.RouteResponse) for r in results)
    assert oa.server.stats.requests == 8
