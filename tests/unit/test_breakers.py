"""pybreaker wrapped once for asyncio: a failing coroutine really opens the breaker."""

from __future__ import annotations

import asyncio

import pytest

from quorum.server.breakers import Breakers
from quorum.server.config import BreakerConfig
from quorum.server.domain import BreakerState
from quorum.server.errors import (
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _breakers(fail_max: int = 3, reset: float = 30.0, clock: Clock | None = None) -> Breakers:
    return Breakers(
        {"p": BreakerConfig(fail_max=fail_max, reset_timeout_s=reset)}, clock=clock or Clock()
    )


async def _failing() -> None:
    await asyncio.sleep(0)
    raise ProviderUnavailable("p: HTTP 503", provider="p", status=503)


async def _call(b: Breakers, coro_fn: object) -> None:
    with b.guard("p"):
        await coro_fn()  # type: ignore[operator]


async def test_failing_coroutine_opens_the_breaker() -> None:
    b = _breakers(fail_max=3)
    changes: list[tuple[str, BreakerState, BreakerState]] = []
    b.add_listener(lambda name, old, new: changes.append((name, old, new)))
    for _ in range(3):
        with pytest.raises(ProviderUnavailable):
            await _call(b, _failing)
    assert b.health("p").state is BreakerState.OPEN
    assert changes == [("p", BreakerState.CLOSED, BreakerState.OPEN)]
    with pytest.raises(ProviderUnavailable) as info:
        await _call(b, _failing)
    assert info.value.metadata["breaker"] == "open"


async def test_client_errors_do_not_count() -> None:
    b = _breakers(fail_max=2)

    async def rejected() -> None:
        raise ProviderRejected("p: HTTP 400", provider="p", status=400)

    for _ in range(5):
        with pytest.raises(ProviderRejected):
            await _call(b, rejected)
    assert b.health("p").state is BreakerState.CLOSED


async def test_cancellation_does_not_count() -> None:
    b = _breakers(fail_max=1)

    async def slow() -> None:
        await asyncio.sleep(10)

    task = asyncio.create_task(_call(b, slow))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert b.health("p").state is BreakerState.CLOSED


async def test_half_open_lets_one_probe_through_then_closes() -> None:
    b = _breakers(fail_max=1, reset=0.05)
    with pytest.raises(ProviderUnavailable):
        await _call(b, _failing)
    await asyncio.sleep(0.06)
    assert b.health("p").state is BreakerState.HALF_OPEN
    release = asyncio.Event()

    async def probe() -> None:
        await release.wait()

    first = asyncio.create_task(_call(b, probe))
    await asyncio.sleep(0.01)
    with pytest.raises(ProviderUnavailable) as info:
        await _call(b, probe)
    assert info.value.metadata["breaker"] == "half_open"
    release.set()
    await first
    assert b.health("p").state is BreakerState.CLOSED


async def test_rate_limit_cools_down_without_opening() -> None:
    clock = Clock()
    b = _breakers(fail_max=1, clock=clock)

    async def limited() -> None:
        raise ProviderRateLimited("p: 429", provider="p", retry_after_s=2.0)

    with pytest.raises(ProviderRateLimited):
        await _call(b, limited)
    assert b.health("p").state is BreakerState.CLOSED  # 429 is not a provider fault
    b.cool_down("p", 2.0)
    health = b.health("p")
    assert health.state is BreakerState.COOLING_DOWN
    assert health.cooldown_remaining_s == pytest.approx(2.0)
    with pytest.raises(ProviderUnavailable):
        await _call(b, limited)
    clock.now += 2.5
    assert b.health("p").state is BreakerState.CLOSED
