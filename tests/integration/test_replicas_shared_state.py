"""Breaker state and cool-downs shared through a real Redis, between two Breakers as two
replicas would hold them; an outage and a restart of Redis lose nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pybreaker
import pytest
import redis

from quorum.server.breakers import Breakers
from quorum.server.config import BreakerConfig, StateConfig
from quorum.server.domain import BreakerState
from quorum.server.errors import ProviderUnavailable
from quorum.server.shared_state import SharedBreakerState, build_shared_state
from tests.conftest import RedisServer

CONFIG = {"p": BreakerConfig(fail_max=2, reset_timeout_s=60), "q": BreakerConfig(fail_max=2)}


class Replica:
    def __init__(self, url: str) -> None:
        shared = build_shared_state(StateConfig(redis_url=url, refresh_interval_s=60))
        assert shared is not None
        self.shared: SharedBreakerState = shared
        self.breakers = Breakers(CONFIG, deployments={"q/m": "q"}, shared=shared)
        self.changes: list[tuple[str, str]] = []
        self.breakers.add_listener(lambda key, old, new: self.changes.append((key, new.value)))

    async def fail(self, key: str = "p") -> None:
        async def boom() -> None:
            raise ProviderUnavailable("HTTP 503", provider=key, status=503)

        with pytest.raises(ProviderUnavailable):
            with self.breakers.guard(key):
                await boom()


@pytest.fixture
async def replicas(redis_server: RedisServer) -> AsyncIterator[tuple[Replica, Replica]]:
    a, b = Replica(redis_server.url), Replica(redis_server.url)
    yield a, b
    await a.shared.close()
    await b.shared.close()


async def test_a_breaker_opened_on_one_replica_is_open_on_the_other(
    replicas: tuple[Replica, Replica],
) -> None:
    a, b = replicas
    await a.fail()
    await b.fail()  # failures from both replicas count together...
    assert await a.shared.sync_once() and await b.shared.sync_once()
    await a.fail()
    # ...so the second local failure on a reaches fail_max=2 only with b's one counted
    assert a.breakers.health("p").state is BreakerState.OPEN
    await a.shared.sync_once()
    await b.shared.sync_once()
    assert b.breakers.health("p").state is BreakerState.OPEN
    assert ("p", "open") in b.changes  # b's listeners heard about it
    with pytest.raises(ProviderUnavailable) as info:
        with b.breakers.guard("p"):
            pass
    assert info.value.metadata["breaker"] == "open"
    assert b.breakers.health("q").state is BreakerState.CLOSED


async def test_pybreakers_own_redis_storage_reads_the_same_state(
    replicas: tuple[Replica, Replica], redis_server: RedisServer
) -> None:
    a, _ = replicas
    for _ in range(2):
        await a.fail("q/m")
    await a.shared.sync_once()
    client = redis.Redis.from_url(redis_server.url)
    storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, client, namespace="quorum:q/m")
    assert storage.state == pybreaker.STATE_OPEN
    assert storage.opened_at is not None
    assert abs(storage.opened_at.timestamp() - time.time()) < 5
    client.close()


async def test_a_retry_after_cool_down_is_shared(replicas: tuple[Replica, Replica]) -> None:
    a, b = replicas
    a.breakers.cool_down("q/m", 20.0)
    await a.shared.sync_once()
    await b.shared.sync_once()
    health = b.breakers.health("q/m")
    assert health.state is BreakerState.COOLING_DOWN
    assert health.cooldown_remaining_s == pytest.approx(20.0, abs=1.0)
    assert b.breakers.health("q").state is BreakerState.CLOSED


async def test_redis_outage_keeps_local_state_and_restart_resyncs(
    replicas: tuple[Replica, Replica], redis_server: RedisServer
) -> None:
    a, b = replicas
    redis_server.stop()
    t0 = time.perf_counter()
    for _ in range(2):
        await a.fail()  # the hot path never waits for Redis
    assert time.perf_counter() - t0 < 0.05
    assert a.breakers.health("p").state is BreakerState.OPEN  # local state still works
    assert not await a.shared.sync_once()
    assert a.shared.degraded and a.shared.stats.failures >= 1
    a.breakers.cool_down("q", 30.0)
    assert not await a.shared.sync_once()
    redis_server.start()  # a fresh, empty Redis
    assert await a.shared.sync_once()  # a's writes are replayed...
    assert await a.shared.sync_once()  # ...and breakers Redis lost are written back whole
    assert not a.shared.degraded
    assert await b.shared.sync_once()
    assert b.breakers.health("p").state is BreakerState.OPEN
    assert b.breakers.health("q").state is BreakerState.COOLING_DOWN


async def test_the_background_refresh_propagates_without_being_asked(
    redis_server: RedisServer,
) -> None:
    config = StateConfig(redis_url=redis_server.url, refresh_interval_s=0.05)
    shared_a, shared_b = build_shared_state(config), build_shared_state(config)
    assert shared_a is not None and shared_b is not None
    a = Breakers(CONFIG, shared=shared_a)
    b = Breakers(CONFIG, shared=shared_b)
    try:
        a.cool_down("p", 10.0)  # wakes a's refresh at once
        for _ in range(100):
            if b.health("p").state is BreakerState.COOLING_DOWN:
                break
            await asyncio.sleep(0.01)
        assert b.health("p").state is BreakerState.COOLING_DOWN
        assert shared_a.stats.cycles >= 2 and shared_a.stats.failures == 0
        summary = shared_a.stats.summary()
        assert summary["round_trip_ms_mean"] < 50 and summary["loop_ms_max"] < 50
    finally:
        await shared_a.close()
        await shared_b.close()
