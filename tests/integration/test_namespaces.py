"""Two deployments on one Redis, told apart by ``state.namespace``: nothing is shared."""

from __future__ import annotations

from typing import Any

import redis

from quorum.client import AsyncQuorumClient
from quorum.server.app import create_server
from quorum.server.config import parse_config
from tests.conftest import RedisServer
from tests.integration.test_budget import CHAT, one_model_config


def deployment(url: str, namespace: str) -> dict[str, Any]:
    data = one_model_config()
    data["models"]["solo"]["simulated"] = {"latency_ms_p50": 2, "latency_ms_p95": 4}
    data["tenants"]["acme"]["budget"] = {"daily_usd": 100.0}
    data["state"] = {"redis_url": url, "namespace": namespace}
    data["cache"] = {"enabled": True, "default_allow": True}
    data["decisions"] = {"sink": "redis"}
    return data


async def test_every_key_a_deployment_writes_carries_its_namespace(
    redis_server: RedisServer,
) -> None:
    servers = [
        create_server(parse_config(deployment(redis_server.url, ns)), "127.0.0.1:0")
        for ns in ("blue", "green")
    ]
    for server in servers:
        await server.start()
    try:
        blue, green = (AsyncQuorumClient(f"127.0.0.1:{s.port}", timeout=10) for s in servers)
        async with blue, green:
            first = await blue.route(CHAT, tenant="acme", request_id="r-1")
            again = await blue.route(CHAT, tenant="acme", request_id="r-2")
            other = await green.route(CHAT, tenant="acme", request_id="r-1")
    finally:
        for server in servers:
            await server.drain(0.5)
    assert not first.cached and again.cached  # the cache works within a deployment ...
    assert not other.cached  # ... and is not shared with another
    store = redis.Redis.from_url(redis_server.url, decode_responses=True)
    keys = [str(k) for k in store.keys("*")]
    assert keys
    stray = [k for k in keys if not k.lstrip("{").startswith(("blue:", "green:"))]
    assert not stray, stray
    for ns in ("blue", "green"):  # each wrote its budget, cache and decision keys
        mine = [k.lstrip("{") for k in keys if k.lstrip("{").startswith(f"{ns}:")]
        assert {k.split(":")[1].rstrip("}") for k in mine} >= {"budget", "cache", "decisions"}, mine
