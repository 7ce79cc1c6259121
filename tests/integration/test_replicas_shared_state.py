"""Breaker state and cool-downs shared through a real Redis, between two Breakers as two
replicas would hold them; an outage and a restart of Redis lose nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pybreaker
import pytest
import redis

from quorum.server.config import BreakerConfig, StateConfig
from quorum.server.domain import BreakerState
from quorum.server.errors import ProviderUnavailable
from quorum.server.resilience.breakers import Breakers
from quorum.server.resilience.shared_state import SharedBreakerState, build_shared_state
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


async def _half_open_pair(redis_server: RedisServer) -> tuple[Replica, Replica]:
    """Two replicas whose breaker ``p`` is open everywhere and due to half-open soon."""
    a, b = Replica(redis_server.url), Replica(redis_server.url)
    for replica in (a, b):
        replica.breakers._breakers["p"].reset_timeout = 0.3  # a lease is held for 1 s
        replica.shared.claim_s = 1.0  # as with the default refresh interval
    for _ in range(2):
        await a.fail()
    assert await a.shared.sync_once() and await b.shared.sync_once()
    assert b.breakers.health("p").state is not BreakerState.CLOSED
    await asyncio.sleep(1.1)  # opened_at is stored in whole seconds
    assert a.breakers.health("p").state is BreakerState.HALF_OPEN
    assert b.breakers.health("p").state is BreakerState.HALF_OPEN
    return a, b


def _admitted(replica: Replica) -> bool:
    """Whether a call to ``p`` goes (a probe that succeeds); if not, why not."""
    refused: ProviderUnavailable | None = None
    try:
        with replica.breakers.guard("p"):
            pass
    except ProviderUnavailable as exc:
        refused = exc
    if refused is None:
        return True
    assert refused.metadata["breaker"] in ("open", "half_open")
    return False


async def _lease_holder(
    a: Replica, b: Replica, redis_server: RedisServer
) -> tuple[Replica, Replica]:
    """After both asked for the probe lease: (the replica that got it, the other)."""
    assert await a.shared.sync_once() and await b.shared.sync_once()
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    for _ in range(100):  # the claims may have gone out with a woken background refresh
        if (holder := client.get("quorum:p:quorum:probe")) is not None:
            break
        await asyncio.sleep(0.01)
    client.close()
    assert holder is not None
    prober, other = (a, b) if holder == a.shared.replica_id else (b, a)
    for _ in range(100):
        if "p" in prober.shared._leases and not other.breakers.callable("p"):
            break
        await asyncio.sleep(0.01)
    return prober, other


async def test_half_open_lets_one_probe_through_across_replicas(
    redis_server: RedisServer,
) -> None:
    a, b = await _half_open_pair(redis_server)
    try:
        # Both want to probe; neither may before it holds the lease.
        assert not _admitted_probe_pending(a) and not _admitted_probe_pending(b)
        prober, other = await _lease_holder(a, b, redis_server)
        # Both half-open; only the holder's calls are let through, so a deployment chooser
        # on the other passes this breaker over.
        assert other.breakers.health("p").state is BreakerState.HALF_OPEN
        assert prober.breakers.callable("p") and not other.breakers.callable("p")
        # Refused, the other does not ask Redis again on every call.
        for _ in range(50):
            assert not _admitted(other)
        assert not other.shared._wanted

        others_turn: list[bool] = []

        async def probe_that_fails() -> None:
            with prober.breakers.guard("p"):  # it holds the lease: its probe goes
                others_turn.append(_admitted_probe_pending(other))
                raise ProviderUnavailable("HTTP 503", provider="p", status=503)

        with pytest.raises(ProviderUnavailable, match="HTTP 503"):
            await probe_that_fails()
        assert others_turn == [False]  # refused while the probe was out
        assert prober.breakers.health("p").state is BreakerState.OPEN  # the probe reopened it
        assert await prober.shared.sync_once()  # the reopening and the released lease go out
        assert await other.shared.sync_once()
        # Open again for the other too (its reset timer runs from a whole-second opened_at).
        assert other.breakers._breakers["p"].current_state == pybreaker.STATE_OPEN
        # Nobody probes again before the next half-open: the lease is kept till then.
        assert not _admitted(other)
        assert await other.shared.sync_once()
        assert not _admitted(other)
        client = redis.Redis.from_url(redis_server.url)
        assert 0 < client.pttl("quorum:p:quorum:probe") <= 1000
        client.close()
        await asyncio.sleep(1.05)
        assert not _admitted(other)  # the lease is free: asked for now...
        assert await other.shared.sync_once()
        assert _admitted(other)  # ...and the next probe is the other's
    finally:
        await a.shared.close()
        await b.shared.close()


async def test_a_cancelled_probe_frees_the_lease_at_once(redis_server: RedisServer) -> None:
    a, b = await _half_open_pair(redis_server)
    try:
        assert not _admitted_probe_pending(a) and not _admitted_probe_pending(b)
        prober, other = await _lease_holder(a, b, redis_server)

        async def hangs() -> None:
            with prober.breakers.guard("p"):
                await asyncio.sleep(30)

        probe = asyncio.create_task(hangs())
        await asyncio.sleep(0.05)
        probe.cancel()  # a hedge that lost, a caller that went away: no verdict
        with pytest.raises(asyncio.CancelledError):
            await probe
        assert prober.breakers._breakers["p"].current_state == pybreaker.STATE_OPEN
        assert await prober.shared.sync_once()
        client = redis.Redis.from_url(redis_server.url)
        assert client.get("quorum:p:quorum:probe") is None  # free now, not after 1 s
        client.close()
        other.shared._elsewhere.clear()  # (it would otherwise wait out what it saw)
        assert not _admitted(other)
        assert await other.shared.sync_once()
        assert _admitted(other)  # the next probe may be anyone's
    finally:
        await a.shared.close()
        await b.shared.close()


async def test_a_replica_that_shuts_down_gives_its_lease_back(
    redis_server: RedisServer,
) -> None:
    a, b = await _half_open_pair(redis_server)
    try:
        assert not _admitted_probe_pending(a) and not _admitted_probe_pending(b)
        prober, _ = await _lease_holder(a, b, redis_server)
        await prober.shared.close()
        client = redis.Redis.from_url(redis_server.url)
        assert client.get("quorum:p:quorum:probe") is None
        client.close()
    finally:
        await a.shared.close()
        await b.shared.close()


async def test_a_successful_probe_closes_the_breaker_for_every_replica(
    redis_server: RedisServer,
) -> None:
    a, b = await _half_open_pair(redis_server)
    try:
        assert not _admitted_probe_pending(a) and not _admitted_probe_pending(b)
        prober, other = await _lease_holder(a, b, redis_server)
        assert not _admitted_probe_pending(other)  # asks again, still refused
        assert await other.shared.sync_once()
        assert not _admitted_probe_pending(other)
        with prober.breakers.guard("p"):
            pass  # the probe succeeds: the breaker closes
        assert prober.breakers.health("p").state is BreakerState.CLOSED
        assert await prober.shared.sync_once() and await other.shared.sync_once()
        assert other.breakers.health("p").state is BreakerState.CLOSED
        assert _admitted(other)  # closed: no lease needed any more
    finally:
        await a.shared.close()
        await b.shared.close()


async def test_without_redis_each_replica_probes_on_its_own(
    redis_server: RedisServer,
) -> None:
    a, b = await _half_open_pair(redis_server)
    try:
        redis_server.stop()
        assert not await a.shared.sync_once() and a.shared.degraded
        assert _admitted(a)  # no lease to be had: the local single probe still works
    finally:
        redis_server.start()
        await a.shared.close()
        await b.shared.close()


def _admitted_probe_pending(replica: Replica) -> bool:
    """Try a call while half-open; without the lease it is refused (and the lease asked for)."""
    admitted = _admitted(replica)
    assert replica.breakers.health("p").state is BreakerState.HALF_OPEN
    return admitted


async def test_a_probe_slower_than_its_lease_keeps_it_until_it_ends(
    redis_server: RedisServer,
) -> None:
    a, b = await _half_open_pair(redis_server)
    try:
        assert not _admitted_probe_pending(a) and not _admitted_probe_pending(b)
        prober, other = await _lease_holder(a, b, redis_server)
        release = asyncio.Event()

        async def slow_probe() -> None:
            with prober.breakers.guard("p"):
                await release.wait()

        probe = asyncio.create_task(slow_probe())
        await asyncio.sleep(0)
        client = redis.Redis.from_url(redis_server.url)
        # Three times the 1 s the lease is held for; the prober's refresh renews it.
        for _ in range(12):
            assert await prober.shared.sync_once()
            assert 0 < client.pttl("quorum:p:quorum:probe") <= 1000
            other.shared._elsewhere.clear()  # ask Redis afresh each time
            assert not _admitted(other)
            assert await other.shared.sync_once()
            assert not _admitted(other)  # still the prober's: no second probe
            await asyncio.sleep(0.25)
        release.set()
        await probe  # the probe succeeds: the breaker closes and the lease is free
        assert await prober.shared.sync_once()
        assert client.get("quorum:p:quorum:probe") is None
        client.close()
    finally:
        await a.shared.close()
        await b.shared.close()
