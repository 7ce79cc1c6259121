"""Provider limits with a bounded queue, and the retry budget."""

from __future__ import annotations

import asyncio

import pytest

from quorum.server.config import LimitsConfig
from quorum.server.errors import ProviderUnavailable
from quorum.server.resilience.limits import ProviderLimiter, RetryBudget, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_concurrency_limit_queues_then_refuses() -> None:
    limiter = ProviderLimiter("p", LimitsConfig(max_concurrency=1, max_queue=1, max_queue_wait_s=5))
    first = await limiter.acquire(10, 5)
    waiting = asyncio.create_task(limiter.acquire(10, 5))
    await asyncio.sleep(0.01)
    assert limiter.queued == 1
    with pytest.raises(ProviderUnavailable) as info:
        await limiter.acquire(10, 5)  # the queue of one is full
    assert info.value.metadata["limit"] == "concurrency"
    assert float(info.value.metadata["retry_after_s"]) > 0
    first.release()
    second = await asyncio.wait_for(waiting, 1)
    assert limiter.in_flight == 1 and limiter.queued == 0
    second.release()
    assert limiter.in_flight == 0


async def test_queue_wait_is_bounded_by_the_callers_time() -> None:
    limiter = ProviderLimiter("p", LimitsConfig(max_concurrency=1, max_queue_wait_s=5))
    held = await limiter.acquire(1, 5)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(ProviderUnavailable, match="waited"):
        await limiter.acquire(1, 0.05)
    assert loop.time() - t0 < 0.5
    held.release()
    assert limiter.queued == 0


async def test_queue_is_fifo() -> None:
    limiter = ProviderLimiter("p", LimitsConfig(max_concurrency=1, max_queue=10))
    held = await limiter.acquire(1, 1)
    order: list[int] = []

    async def take(i: int) -> None:
        permit = await limiter.acquire(1, 2)
        order.append(i)
        await asyncio.sleep(0)
        permit.release()

    tasks = [asyncio.create_task(take(i)) for i in range(5)]
    await asyncio.sleep(0.01)
    held.release()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]


async def test_cancelled_waiter_leaves_the_queue() -> None:
    limiter = ProviderLimiter("p", LimitsConfig(max_concurrency=1, max_queue=2))
    held = await limiter.acquire(1, 1)
    waiter = asyncio.create_task(limiter.acquire(1, 5))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.queued == 0
    held.release()
    (await limiter.acquire(1, 1)).release()


async def test_requests_per_minute_waits_for_the_refill() -> None:
    limiter = ProviderLimiter("p", LimitsConfig(requests_per_minute=600, max_queue_wait_s=1))
    for _ in range(600):
        assert limiter.try_acquire(1) is not None  # a minute's burst
    assert limiter.try_acquire(1) is None
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    permit = await limiter.acquire(1, 1)  # 10 a second: about 0.1 s
    assert 0.05 < loop.time() - t0 < 0.5
    permit.release()
    with pytest.raises(ProviderUnavailable) as info:
        await limiter.acquire(1, 0)
    assert info.value.metadata["limit"] == "requests_per_minute"


def test_tokens_per_minute_is_corrected_by_real_usage() -> None:
    clock = Clock()
    limiter = ProviderLimiter("p", LimitsConfig(tokens_per_minute=1000), clock)
    permit = limiter.try_acquire(900)
    assert permit is not None
    assert limiter.try_acquire(200) is None
    permit.release(used_tokens=100)  # the estimate was 800 too high
    assert limiter.try_acquire(200) is not None


def test_token_bucket_refills_and_caps() -> None:
    clock = Clock()
    bucket = TokenBucket(60, clock)  # one a second
    bucket.take(60)
    assert not bucket.fits(1)
    assert bucket.wait_s(2) == pytest.approx(2.0)
    clock.now += 2
    assert bucket.fits(2)
    clock.now += 1000
    bucket.refund(1000)  # never above a minute's worth
    bucket.take(60)
    assert not bucket.fits(1)


def test_retry_budget_holds_retries_to_a_share_of_calls() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.1, min_per_s=0.0, clock=clock)
    spent = 0
    for _ in range(1000):
        budget.deposit()
        if budget.try_spend():
            spent += 1
    # The initial burst (10) plus a tenth of the calls.
    assert spent <= 10 + 100 + 1
    assert spent >= 100
    assert budget.refused > 0


def test_retry_budget_refills_over_time_for_quiet_services() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.0, min_per_s=1.0, clock=clock)
    while budget.try_spend():
        pass
    assert not budget.try_spend()
    clock.now += 3
    assert budget.try_spend() and budget.try_spend() and budget.try_spend()
    assert not budget.try_spend()
