"""The response cache through a real server: hits cost nothing, tenants never share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from quorum.client import AsyncQuorumClient, QuorumError
from quorum.route.v1 import types_pb2 as pb
from quorum.server.app import RunningServer, create_server
from quorum.server.config import parse_config
from quorum.server.observability.metrics import sample_value
from tests.conftest import RedisServer, sim_config
from tests.integration.test_budget import spend

ALLOW = pb.RoutingHints(allow_cache=True)


def cache_config(**cache: Any) -> dict[str, Any]:
    data = sim_config(auth={"mode": "disabled"}, cache={"enabled": True, **cache})
    data["tenants"] = {"acme": {}, "globex": {}}
    return data


@asynccontextmanager
async def serving(data: dict[str, Any]) -> AsyncIterator[tuple[RunningServer, AsyncQuorumClient]]:
    running = create_server(parse_config(data), "127.0.0.1:0")
    await running.start()
    client = AsyncQuorumClient(f"127.0.0.1:{running.port}", timeout=10)
    try:
        yield running, client
    finally:
        await client.close()
        await running.drain(0.5)


async def test_a_repeated_request_is_a_free_hit_for_the_same_tenant_only() -> None:
    async with serving(cache_config()) as (running, client):
        first = await client.route("What is 17 * 23?", tenant="acme", hints=ALLOW)
        assert not first.cached and first.cost_usd > 0
        hit = await client.route("  What is 17 * 23?\r\n", tenant="acme", hints=ALLOW)
        assert hit.cached
        assert (hit.content, hit.model) == (first.content, first.model)
        assert hit.cost_usd == 0 and not hit.attempts
        assert hit.baseline_cost_usd == first.baseline_cost_usd  # the saving it made
        assert hit.plan.reasons[0].code == "CACHE_HIT"
        other = await client.route("What is 17 * 23?", tenant="globex", hints=ALLOW)
        assert not other.cached
        metrics = running.router.metrics
        assert sample_value(metrics, "quorum_cache_hits_total", {"tenant": "acme"}) == 1
        assert sample_value(metrics, "quorum_cache_hits_total", {"tenant": "globex"}) == 0


async def test_what_bypasses_the_cache() -> None:
    async with serving(cache_config()) as (_, client):
        for _ in range(2):
            plain = await client.route("What is 2 + 3?", tenant="acme")  # not allowed
            warm = await client.route(
                "What is 2 + 3?",
                tenant="acme",
                hints=ALLOW,
                params=pb.GenerationParams(temperature=0.7),
            )
            tools = await client.route(
                "What is 2 + 3?",
                tenant="acme",
                hints=ALLOW,
                params=pb.GenerationParams(tools=[pb.Tool(name="calc")]),
            )
            assert not (plain.cached or warm.cached or tools.cached)


async def test_default_allow_and_different_hints_make_different_entries() -> None:
    async with serving(cache_config(default_allow=True)) as (_, client):
        await client.route("hello", tenant="acme")
        assert (await client.route("hello", tenant="acme")).cached
        quality = pb.RoutingHints(priority=pb.PRIORITY_QUALITY)
        assert not (await client.route("hello", tenant="acme", hints=quality)).cached


async def test_a_cache_hit_is_served_even_when_the_budget_is_spent() -> None:
    data = cache_config(default_allow=True)
    data["tenants"]["acme"]["budget"] = {"daily_usd": 1.0}
    async with serving(data) as (running, client):
        await client.route("What is 6 * 7?", tenant="acme")
        await spend(running, 1.0)
        assert (await client.route("What is 6 * 7?", tenant="acme")).cached
        with pytest.raises(QuorumError) as info:
            await client.route("What is 6 * 8?", tenant="acme")
        assert info.value.reason == "BUDGET_EXHAUSTED"


async def test_replicas_share_entries_through_redis(redis_server: RedisServer) -> None:
    data = cache_config(default_allow=True)
    data["state"] = {"redis_url": redis_server.url}
    async with serving(data) as (_, one), serving(data) as (_, two):
        first = await one.route("What is 9 * 9?", tenant="acme")
        hit = await two.route("What is 9 * 9?", tenant="acme")
        assert hit.cached and hit.content == first.content and hit.simulated
        assert not (await two.route("What is 9 * 9?", tenant="globex")).cached
    redis_server.stop()  # a cache that is down is a miss, never an error
    async with serving(data) as (_, three):
        assert not (await three.route("What is 9 * 9?", tenant="acme")).cached


async def _streamed(client: AsyncQuorumClient, prompt: str) -> pb.RouteResponse:
    finals = [
        event.final
        async for event in client.route_stream(prompt, tenant="acme", hints=ALLOW)
        if event.WhichOneof("event") == "final"
    ]
    (final,) = finals
    return final


async def test_streams_bypass_the_cache_unless_configured() -> None:
    async with serving(cache_config()) as (_, client):
        await client.route("What is 4 * 4?", tenant="acme", hints=ALLOW)
        assert not (await _streamed(client, "What is 4 * 4?")).cached
        assert (await client.route("What is 4 * 4?", tenant="acme", hints=ALLOW)).cached
    async with serving(cache_config(cache_streams=True)) as (_, client):
        await client.route("What is 4 * 4?", tenant="acme", hints=ALLOW)
        hit = await _streamed(client, "What is 4 * 4?")
        assert hit.cached and hit.content


async def test_an_answer_a_budget_guard_shaped_is_not_cached() -> None:
    # Past the soft limit a request for the premium model is answered by a cheaper
    # one; that answer must not be served later, once the pressure is gone.
    data = cache_config(default_allow=True)
    data["tenants"]["acme"]["budget"] = {"daily_usd": 1.0}
    premium = pb.RoutingHints(model="frontier")
    async with serving(data) as (running, client):
        await spend(running, 0.9)  # above the 85% soft threshold
        pressed = await client.route("What is 6 * 7?", tenant="acme", hints=premium)
        again = await client.route("What is 6 * 7?", tenant="acme", hints=premium)
    assert pressed.guards and pressed.model != "frontier"
    assert not again.cached
