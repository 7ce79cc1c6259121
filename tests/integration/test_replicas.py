"""Two real ``quorum serve`` processes share breakers and cool-downs through one real
Redis: what one replica learns, the other acts on; Redis going away and coming back
costs neither replica a request."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from quorum.client import AsyncQuorumClient
from quorum.route.v1 import types_pb2 as pb
from tests.conftest import RedisServer
from tests.fakes import openai_server
from tests.fakes.common import Running
from tests.faults.upstreams import outcomes
from tests.integration.test_drain import free_port, wait_serving

QUORUM = Path(sys.executable).with_name("quorum")
HELLO = "Hello there"


def _config(fake: Running, redis_url: str) -> dict[str, Any]:
    def provider(**extra: Any) -> dict[str, Any]:
        return {
            "kind": "openai",
            "base_url": fake.base_url,
            "headers": {"Authorization": "Bearer test"},
            "timeout_s": 5,
            **extra,
        }

    def model(model_id: str, provider_name: str, price: float) -> dict[str, Any]:
        return {
            "provider": provider_name,
            "model_id": model_id,
            "tier": "cheap",
            "input_usd_per_mtok": price,
            "output_usd_per_mtok": price * 4,
        }

    return {
        "server": {"log_level": "info", "grace_period_s": 1},
        "providers": {
            "shaky": provider(breaker={"fail_max": 2, "reset_timeout_s": 120}),
            "limited": provider(retry={"max_rate_limit_wait_s": 0}),
            "steady": provider(),
        },
        "tiers": ["cheap"],
        "models": {
            "flaky": model("error-503", "shaky", 0.1),
            "busy": model("ratelimit-60", "limited", 0.3),
            "solid": model("ok", "steady", 0.2),
        },
        "routing": {"default_strategy": "single"},
        "state": {"redis_url": redis_url, "refresh_interval_s": 0.1, "redis_timeout_s": 0.2},
        "decisions": {"sink": "none"},
    }


@pytest.fixture
async def fake() -> AsyncIterator[Running]:
    async with openai_server.serve() as running:
        yield running


async def _eventually(check: Any, within_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not await check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def _state(client: AsyncQuorumClient, provider: str) -> int:
    plan = await client.plan(HELLO)
    return next(p.breaker_state for p in plan.providers if p.provider == provider)


async def test_replicas_share_breakers_and_survive_a_redis_restart(
    tmp_path: Path, fake: Running, redis_server: RedisServer
) -> None:
    config_path = tmp_path / "quorum.yaml"
    config_path.write_text(yaml.safe_dump(_config(fake, redis_server.url)))
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    logs = [tmp_path / f"replica-{i}.log" for i in range(2)]
    sinks = [log.open("w") for log in logs]
    procs = [
        subprocess.Popen(
            [str(QUORUM), "serve", "--config", str(config_path), "--address", address],
            stdout=subprocess.DEVNULL,
            stderr=sink,
            cwd=tmp_path,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        for address, sink in zip(addresses, sinks, strict=True)
    ]
    clients = [AsyncQuorumClient(a, timeout=10) for a in addresses]
    a, b = clients
    flaky = pb.RoutingHints(model="flaky")
    try:
        await asyncio.gather(*(wait_serving(x) for x in addresses))

        # Replica a sees the failures and opens the breaker...
        for _ in range(2):
            r = await a.route(HELLO, hints=flaky)
            assert r.model == "solid" and outcomes(r.attempts)[0] == ("flaky", "FAILED")
        assert await _state(a, "shaky") == pb.BREAKER_STATE_OPEN
        calls_to_flaky = fake.server.stats.by_behaviour["error"]
        assert calls_to_flaky == 2

        # ...and replica b, which never called it, skips it.
        async def b_sees_open() -> bool:
            return await _state(b, "shaky") == pb.BREAKER_STATE_OPEN

        await _eventually(b_sees_open)
        plan = await b.plan(HELLO, hints=flaky)
        last = plan.plan.stages[-1].candidates[-1]
        assert (last.model, last.breaker_state) == ("flaky", pb.BREAKER_STATE_OPEN)
        assert any(r.code == "UNHEALTHY_LAST" for r in plan.plan.reasons)
        r = await b.route(HELLO, hints=flaky)
        assert outcomes(r.attempts) == [("solid", "SUCCEEDED")]
        assert fake.server.stats.by_behaviour["error"] == calls_to_flaky  # b sent nothing

        # A Retry-After seen by b cools the provider down on a too.
        r = await b.route(HELLO, hints=pb.RoutingHints(model="busy"))
        assert r.model == "solid"

        async def a_cools() -> bool:
            return await _state(a, "limited") == pb.BREAKER_STATE_COOLING_DOWN

        await _eventually(a_cools)

        # Redis goes away: both replicas keep answering from local state.
        assert redis_server.proc is not None
        redis_server.proc.kill()
        redis_server.stop()

        async def serving_while(event: str) -> bool:
            for client in clients:
                r = await client.route(HELLO)
                assert r.model == "solid" and r.content
            return all(event in _events(log) for log in logs)

        await _eventually(lambda: serving_while("shared_state_unavailable"))
        assert await _state(b, "shaky") == pb.BREAKER_STATE_OPEN

        # Redis comes back empty: the replicas write their state back and share again.
        redis_server.start()
        direct = redis.Redis.from_url(redis_server.url)

        async def resynced() -> bool:
            state = direct.get("quorum:shaky:pybreaker:state")
            return state == b"open"

        await _eventually(resynced)
        await _eventually(lambda: serving_while("shared_state_restored"))
        direct.close()
    finally:
        for client in clients:
            await client.close()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                await asyncio.to_thread(proc.wait, 10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for sink in sinks:
            sink.close()
    codes = [proc.returncode for proc in procs]
    assert codes == [0, 0], [log.read_text()[-1500:] for log in logs]  # drained cleanly
    assert ("breaker_state_changed", "open") in [(e, n) for e, n in _changes(logs[1])]


def _events(log: Path) -> list[str]:
    out = []
    for line in log.read_text().splitlines():
        try:
            out.append(json.loads(line)["event"])
        except (ValueError, KeyError):
            continue
    return out


def _changes(log: Path) -> list[tuple[str, str]]:
    out = []
    for line in log.read_text().splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if item.get("event") == "breaker_state_changed":
            out.append((item["event"], item["new"]))
    return out
