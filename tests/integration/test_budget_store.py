"""The budget store contract, run against the in-process store and a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from quorum.server.budget.ledger import BudgetStore, MemoryBudgetStore, ReserveStatus
from quorum.server.budget.redis_store import RedisBudgetStore
from tests.conftest import RedisServer

KEYS = ["{quorum:budget}:acme:day:x", "{quorum:budget}:_global:day:x"]
KEEP = [86_400, 86_400]


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[BudgetStore]:
    if request.param == "memory":
        yield MemoryBudgetStore()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    client = aioredis.Redis.from_url(server.url)
    yield RedisBudgetStore(client)
    await client.aclose()


async def test_reserve_within_every_allowance_then_settle(store: BudgetStore) -> None:
    ok = await store.reserve("r1", "n1", 300, KEYS, [1000, 500], KEEP, 60)
    assert ok.status is ReserveStatus.OK
    assert await store.read(KEYS) == [(0, 300), (0, 300)]
    refused = await store.reserve("r2", "n2", 300, KEYS, [1000, 500], KEEP, 60)
    assert (refused.status, refused.refused_index, refused.reserved) == (
        ReserveStatus.REFUSED,
        1,
        300,
    )
    assert await store.read(KEYS) == [(0, 300), (0, 300)]  # all or nothing
    assert await store.settle("r1", "n1", 120)
    assert await store.read(KEYS) == [(120, 0), (120, 0)]


async def test_reserve_and_settle_are_idempotent(store: BudgetStore) -> None:
    assert (await store.reserve("r1", "n1", 100, KEYS, [1000, 1000], KEEP, 60)).status.value == "ok"
    again = await store.reserve("r1", "n1", 100, KEYS, [1000, 1000], KEEP, 60)
    assert again.status is ReserveStatus.OK
    assert await store.read(KEYS) == [(0, 100), (0, 100)]
    other = await store.reserve("r1", "n2", 100, KEYS, [1000, 1000], KEEP, 60)
    assert other.status is ReserveStatus.DUPLICATE
    assert not await store.settle("r1", "n2", 50)  # not the holder's nonce
    assert await store.settle("r1", "n1", 50)
    assert not await store.settle("r1", "n1", 50)
    assert await store.read(KEYS) == [(50, 0), (50, 0)]
    # Once settled, the id may be used again (a retry that really calls again).
    assert (await store.reserve("r1", "n3", 10, KEYS, [1000, 1000], KEEP, 60)).status.value == "ok"


async def test_an_abandoned_reservation_is_released_and_a_late_settle_still_counts(
    store: BudgetStore,
) -> None:
    assert (
        await store.reserve("gone", "n1", 400, KEYS, [500, 500], KEEP, 0.05)
    ).status.value == "ok"
    await asyncio.sleep(0.1)
    # The next reserve releases it first, so this one fits.
    assert (await store.reserve("next", "n2", 400, KEYS, [500, 500], KEEP, 60)).status.value == "ok"
    assert await store.read(KEYS) == [(0, 400), (0, 400)]
    assert await store.settle("gone", "n1", 30)  # its calls did cost something
    assert await store.read(KEYS) == [(30, 400), (30, 400)]


async def test_concurrent_reservations_never_pass_the_allowance(store: BudgetStore) -> None:
    results = await asyncio.gather(
        *(store.reserve(f"r{i}", "n", 7, KEYS[:1], [100], KEEP[:1], 60) for i in range(50))
    )
    assert sum(r.status is ReserveStatus.OK for r in results) == 14
    assert await store.read(KEYS[:1]) == [(0, 98)]
