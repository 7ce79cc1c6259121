"""A settle the budget store does not take: the answer is not held, the spend is owed."""

from __future__ import annotations

import asyncio
import signal

import pytest
import redis.asyncio as aioredis

from quorum.server.budget.ledger import (
    MICROS,
    Budgets,
    BudgetStoreError,
    MemoryBudgetStore,
    Reservation,
    ReserveStatus,
)
from quorum.server.config import parse_config
from tests.conftest import RedisServer
from tests.integration.test_budget import CHAT, budgets_of, one_model_config, serving

KEY = "{quorum:budget}:acme:day:x"


async def test_an_answer_is_not_held_by_an_unreachable_store_and_its_spend_is_not_lost(
    redis_server: RedisServer,
) -> None:
    data = one_model_config()
    data["models"]["solo"]["simulated"] = {"latency_ms_p50": 400, "latency_ms_p95": 400}
    data["tenants"]["acme"]["budget"] = {"daily_usd": 10.0}
    data["state"] = {"redis_url": redis_server.url}
    assert redis_server.proc is not None
    shared = aioredis.Redis.from_url(redis_server.url)
    async with serving(data) as (running, client):
        answer = asyncio.create_task(client.route(CHAT, tenant="acme", timeout=2.5))
        await asyncio.sleep(0.2)  # reserved; the model answers at 0.4 s
        redis_server.proc.send_signal(signal.SIGSTOP)  # Redis stops answering
        try:
            # The settle's three tries take over 3 s to fail (a 1 s timeout each): the
            # answer goes out after waiting for it 1 s at most, well within 2.5 s.
            routed = await answer
            budgets = budgets_of(running)
            for _ in range(100):
                if budgets.owed_usd:
                    break
                await asyncio.sleep(0.05)
            assert budgets.owed_usd == pytest.approx(routed.cost_usd, abs=1e-6)
        finally:
            redis_server.proc.send_signal(signal.SIGCONT)
        # Once Redis answers again the owed settle is taken: the spend is counted.
        for _ in range(100):
            if not budgets.owed_usd:
                break
            await asyncio.sleep(0.1)
        assert budgets.owed_usd == 0
        spent = 0
        async for key in shared.scan_iter("{quorum:budget}:acme:day:*"):
            spent = int(await shared.hget(key, "spent") or 0)
            assert int(await shared.hget(key, "reserved") or 0) == 0
        assert spent / MICROS == pytest.approx(routed.cost_usd, abs=1e-6)
    await shared.aclose()


class _Flaky(MemoryBudgetStore):
    """The in-process store, refusing settles while ``down``."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def settle(self, rid: str, nonce: str, actual: int) -> bool:
        if self.down:
            raise BudgetStoreError("store down")
        return await super().settle(rid, nonce, actual)


async def test_owed_settles_are_repaid_in_order_and_closing_tries_once_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("quorum.server.budget.ledger.OWED_RETRY_S", (0.05, 0.1))
    store = _Flaky()
    budgets = Budgets(parse_config(one_model_config()).budgets, store)
    held = []
    for i in range(3):
        result = await store.reserve(f"r{i}", f"n{i}", 1_000, [KEY], [10**9], [86_400], 60)
        assert result.status is ReserveStatus.OK
        held.append(Reservation(f"r{i}", f"n{i}", 1_000, ()))
    store.down = True
    for i, reservation in enumerate(held[:2]):
        await budgets.settle(reservation, (i + 1) / 1000)
    assert budgets.owed_usd == pytest.approx(0.003)
    await asyncio.sleep(0.3)
    assert budgets.owed_usd == pytest.approx(0.003)  # still down: still owed
    store.down = False
    for _ in range(50):
        if not budgets.owed_usd:
            break
        await asyncio.sleep(0.02)
    assert await store.read([KEY]) == [(3_000, 1_000)]
    store.down = True
    await budgets.settle(held[2], 0.004)
    store.down = False
    await budgets.close()  # before the retry is due: closing settles it
    assert budgets.owed_usd == 0
    assert await store.read([KEY]) == [(7_000, 0)]


class _Gated(_Flaky):
    """Once ``holding``, holds the settle of ``r0`` until ``gate`` opens (and says when it
    got there)."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = False
        self.gate = asyncio.Event()
        self.inside = asyncio.Event()
        self.taken: list[str] = []

    async def settle(self, rid: str, nonce: str, actual: int) -> bool:
        if rid == "r0" and self.holding:
            self.inside.set()
            await self.gate.wait()
        settled = await super().settle(rid, nonce, actual)
        self.taken.append(rid)
        return settled


async def test_a_full_backlog_dropping_the_entry_being_repaid_loses_no_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("quorum.server.budget.ledger.MAX_OWED", 2)
    monkeypatch.setattr("quorum.server.budget.ledger.OWED_RETRY_S", (0.05, 0.1))
    store = _Gated()
    budgets = Budgets(parse_config(one_model_config()).budgets, store)
    held = []
    for i in range(3):
        await store.reserve(f"r{i}", f"n{i}", 1_000, [KEY], [10**9], [86_400], 60)
        held.append(Reservation(f"r{i}", f"n{i}", 1_000, ()))
    store.down = True
    await budgets.settle(held[0], 0.001)
    await budgets.settle(held[1], 0.001)  # owed: r0, r1
    store.holding, store.down = True, False
    await store.inside.wait()  # the repay is inside the store's settle of r0
    store.down = True
    await budgets.settle(held[2], 0.001)  # owed and the backlog full: r0 makes room
    store.down = False
    store.gate.set()  # r0's settle is taken after all
    for _ in range(100):
        if not budgets.owed_usd:
            break
        await asyncio.sleep(0.02)
    assert sorted(store.taken) == ["r0", "r1", "r2"]  # r1 was not popped in r0's place
    assert await store.read([KEY]) == [(3_000, 0)]
    await budgets.close()


async def test_a_settle_failing_after_close_is_dropped_not_retried() -> None:
    store = _Flaky()
    budgets = Budgets(parse_config(one_model_config()).budgets, store)
    await store.reserve("late", "n", 1_000, [KEY], [10**9], [86_400], 60)
    await budgets.close()
    store.down = True
    await budgets.settle(Reservation("late", "n", 1_000, ()), 0.001)
    assert budgets.owed_usd == 0  # said (budget_settle_dropped), with no task left to run
    assert budgets._repaying is None
