"""5xx storms through the real server: failover, the breaker opening, half-open recovery,
and the retry budget holding retries to a share of the load."""

from __future__ import annotations

import asyncio

import grpc

from quorum.client import QuorumError
from quorum.route.v1 import types_pb2 as pb
from tests.conftest import running_server
from tests.fakes.common import Behaviour, Running
from tests.faults.upstreams import config, outcomes, provider, route_or_error


async def test_503_storm_fails_over_opens_the_breaker_and_stops_calling(
    oa: Running, oa2: Running
) -> None:
    cfg = config(
        {
            "bad": provider(oa.base_url, breaker={"fail_max": 3, "reset_timeout_s": 60}),
            "good": provider(oa2.base_url),
        },
        [("shaky", "bad", "error-503"), ("steady", "good", "ok")],
    )
    async with running_server(cfg) as (_, client):
        for _ in range(3):
            r = await route_or_error(client)
            assert isinstance(r, pb.RouteResponse) and r.model == "steady"
        assert oa.server.stats.requests == 3
        plan = await client.plan("Hello there")
        states = {p.provider: p.breaker_state for p in plan.providers}
        assert states["bad"] == pb.BREAKER_STATE_OPEN
        assert plan.plan.stages[0].candidates[0].model == "steady"  # unhealthy moved last
        answers = await asyncio.gather(*(route_or_error(client) for _ in range(20)))
    assert all(isinstance(a, pb.RouteResponse) and a.model == "steady" for a in answers)
    assert oa.server.stats.requests == 3  # the open breaker spared the failing provider
    first = answers[0]
    assert isinstance(first, pb.RouteResponse)
    assert all(
        a.model != "shaky" or a.outcome == pb.ATTEMPT_OUTCOME_SKIPPED for a in first.attempts
    )


async def test_500_storm_on_every_candidate_is_unavailable_with_attempts(oa: Running) -> None:
    cfg = config(
        {"oa": provider(oa.base_url)}, [("a", "oa", "error-500"), ("b", "oa", "error-502")]
    )
    async with running_server(cfg) as (_, client):
        results = await asyncio.gather(*(route_or_error(client) for _ in range(5)))
    for r in results:
        assert isinstance(r, QuorumError)
        assert (r.code, r.reason) == (grpc.StatusCode.UNAVAILABLE, "ALL_ATTEMPTS_FAILED")
        assert [a.model for a in r.attempts] == ["a", "b"]


async def test_half_open_probe_closes_the_breaker_once_the_provider_recovers(
    oa: Running, oa2: Running
) -> None:
    cfg = config(
        {
            "flaky": provider(oa.base_url, breaker={"fail_max": 2, "reset_timeout_s": 0.3}),
            "good": provider(oa2.base_url),
        },
        [("primary", "flaky", "ok"), ("backup", "good", "ok")],
    )
    oa.server.script.extend([Behaviour.parse("error-503")] * 2)
    async with running_server(cfg) as (running, client):
        for _ in range(2):
            assert (await client.route("Hello there")).model == "backup"
        assert running.router.breakers.health("flaky").state.value == "open"
        assert (await client.route("Hello there")).model == "backup"  # still open: skipped
        assert oa.server.stats.requests == 2
        await asyncio.sleep(0.35)
        assert running.router.breakers.health("flaky").state.value == "half_open"
        probe = await client.route("Hello there")
        assert probe.model == "primary"  # the probe went through and succeeded
        assert running.router.breakers.health("flaky").state.value == "closed"


async def test_retry_budget_holds_retries_to_a_share_in_a_storm(oa: Running, oa2: Running) -> None:
    retry = {"max_retries": 3, "backoff_base_s": 0.001, "budget_ratio": 0.1, "budget_min_per_s": 0}
    cfg = config(
        {
            "bad": provider(oa.base_url, retry=retry, breaker={"fail_max": 1000}),
            "good": provider(oa2.base_url),
        },
        [("shaky", "bad", "error-503"), ("steady", "good", "ok")],
        routing={"max_failover_attempts": 8, "max_upstream_calls": 8},
    )
    async with running_server(cfg) as (_, client):
        results = [await route_or_error(client) for _ in range(30)]
    assert all(isinstance(r, pb.RouteResponse) and r.model == "steady" for r in results)
    # 30 first calls; without a budget 90 retries, with it the initial ten plus a tenth.
    assert 30 + 10 <= oa.server.stats.requests <= 30 + 10 + 3 + 1
    retried = results[0]
    assert isinstance(retried, pb.RouteResponse)
    assert outcomes(retried.attempts)[:4] == [("shaky", "FAILED")] * 4  # three retries, allowed


async def test_callers_short_deadlines_do_not_open_the_breaker(oa: Running) -> None:
    # A caller allowing 0.15 s for a model that needs 0.5 s times out; that is its haste,
    # not the provider's fault: other callers must still reach the provider.
    cfg = config(
        {"up": provider(oa.base_url, breaker={"fail_max": 2, "reset_timeout_s": 60})},
        [("slow", "up", "slow-500")],
    )
    async with running_server(cfg) as (running, client):
        for _ in range(4):
            error = await route_or_error(client, timeout=0.15)
            assert isinstance(error, QuorumError)
            assert error.code is grpc.StatusCode.DEADLINE_EXCEEDED
        health = running.router.breakers.health("up")
        answer = await client.route("Hello there", timeout=5)  # a patient caller
    assert (health.state.value, health.failure_count) == ("closed", 0)
    assert answer.model == "slow"


async def test_a_deadline_well_past_the_usual_latency_still_counts(oa: Running) -> None:
    # When the caller allowed several times what the deployment usually needs, the
    # silence is the provider's: the timeout counts towards its breaker.
    cfg = config(
        {"up": provider(oa.base_url, breaker={"fail_max": 2, "reset_timeout_s": 60})},
        [("m", "up", "slow-400")],
    )
    async with running_server(cfg) as (running, client):
        latency = running.router.resilience.latency
        (deployment,) = running.router.catalog.models["m"].deployments
        for _ in range(8):
            latency.record(deployment.key, 0.01)  # it used to answer in 10 ms
        error = await route_or_error(client, timeout=0.3)
        health = running.router.breakers.health("up")
    assert isinstance(error, QuorumError)
    assert health.failure_count == 1


async def test_cascade_retries_leave_a_call_for_the_next_tier(oa: Running) -> None:
    # Retries of a failing cheap tier must not use up the call cap: the next tier,
    # healthy, still gets its call (as failover does in the single strategy).
    retry = {"max_retries": 3, "backoff_base_s": 0.001, "budget_ratio": 1.0}
    cfg = config(
        {
            "bad": provider(oa.base_url, retry=retry, breaker={"fail_max": 100}),
            "good": provider(oa.base_url),
        },
        {
            "cheap": {"provider": "bad", "model_id": "error-503", "tier": "cheap"},
            "mid": {"provider": "good", "model_id": "ok", "tier": "mid"},
        },
        tiers=["cheap", "mid"],
        routing={"max_upstream_calls": 4},
    )
    async with running_server(cfg) as (_, client):
        r = await client.route("Hello there", hints=pb.RoutingHints(strategy=pb.STRATEGY_CASCADE))
    assert r.model == "mid"
    assert [a.model for a in r.attempts].count("cheap") == 3  # 1 + 2 retries, 1 left for mid
    assert len(r.attempts) <= 4
