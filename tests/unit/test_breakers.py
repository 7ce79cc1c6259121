"""pybreaker wrapped once for asyncio: a failing coroutine really opens the breaker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

import pybreaker
import pytest

from quorum.server.config import BreakerConfig
from quorum.server.domain import BreakerState
from quorum.server.errors import (
    AdapterFault,
    CallerDeadlineTimeout,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from quorum.server.resilience.breakers import MAX_COOLDOWN_S, Breakers


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


async def _cancelled(b: Breakers) -> None:
    """A call under ``p`` cancelled while it waits (a hedge that lost, a caller gone)."""
    task = asyncio.create_task(_call(b, lambda: asyncio.sleep(10)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cancelled_probe_is_no_verdict_the_next_call_probes_again() -> None:
    b = _breakers(fail_max=1, reset=0.05)
    with pytest.raises(ProviderUnavailable):
        await _call(b, _failing)
    await asyncio.sleep(0.06)
    await _cancelled(b)
    # Neither closed (nothing showed the provider healthy) nor open: probe again.
    assert b.health("p").state is BreakerState.HALF_OPEN
    with pytest.raises(ProviderUnavailable):
        await _call(b, _failing)
    assert b.health("p").state is BreakerState.OPEN


async def test_cancellation_does_not_reset_the_failure_count() -> None:
    b = _breakers(fail_max=3)
    heard: list[str] = []

    class Recorder:
        def call_succeeded(self, key: str) -> None:
            heard.append("ok")

        def call_failed(self, key: str, error: BaseException) -> None:
            heard.append("failed")

        def __getattr__(self, name: str) -> object:
            return lambda *args: None

    b.observe(Recorder())  # type: ignore[arg-type]
    for _ in range(2):
        with pytest.raises(ProviderUnavailable):
            await _call(b, _failing)
        await _cancelled(b)
    assert b.health("p").failure_count == 2
    with pytest.raises(ProviderUnavailable):
        await _call(b, _failing)
    assert b.health("p").state is BreakerState.OPEN
    assert heard == ["failed", "failed", "failed"]


def _no_verdicts() -> list[ProviderError]:
    """Outcomes that say nothing about the provider's health."""
    return [
        ProviderRateLimited("p: HTTP 429", provider="p", retry_after_s=0.0),
        CallerDeadlineTimeout("p: no answer (the caller's deadline)", provider="p"),
        AdapterFault("p: unexpected KeyError handling the response", provider="p"),
    ]


async def _ending_with(b: Breakers, error: ProviderError) -> None:
    async def call() -> None:
        raise error

    with pytest.raises(type(error)):
        await _call(b, call)


@pytest.mark.parametrize("index", range(3))
async def test_no_verdict_keeps_the_failure_count(index: int) -> None:
    # 503, 503, then a 429 (or the caller's haste, or our adapter's bug): pybreaker
    # would take an excluded error as a success and reset the count, so an overloaded
    # provider answering 503s between 429s would never open its breaker.
    b = _breakers(fail_max=3)
    for _ in range(2):
        with pytest.raises(ProviderUnavailable):
            await _call(b, _failing)
    await _ending_with(b, _no_verdicts()[index])
    assert b.health("p").failure_count == 2
    with pytest.raises(ProviderUnavailable):
        await _call(b, _failing)
    assert b.health("p").state is BreakerState.OPEN


@pytest.mark.parametrize("index", range(3))
async def test_a_probe_without_verdict_leaves_the_breaker_half_open(index: int) -> None:
    b = _breakers(fail_max=1, reset=0.05)
    with pytest.raises(ProviderUnavailable):
        await _call(b, _failing)
    await asyncio.sleep(0.06)
    await _ending_with(b, _no_verdicts()[index])
    assert b.health("p").state is BreakerState.HALF_OPEN  # not closed: nothing answered
    with pytest.raises(ProviderUnavailable):
        await _call(b, _failing)  # the next call is the probe again
    assert b.health("p").state is BreakerState.OPEN


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


def _deployment_breakers(clock: Clock | None = None) -> Breakers:
    return Breakers(
        {
            "east": BreakerConfig(fail_max=2, reset_timeout_s=30),
            "west": BreakerConfig(fail_max=2, reset_timeout_s=30, scope="model"),
        },
        deployments={"east/llama": "east", "west/llama": "west", "west/mistral": "west"},
        clock=clock or Clock(),
    )


async def _fail_under(b: Breakers, key: str) -> None:
    with pytest.raises(ProviderUnavailable):
        with b.guard(key):
            await _failing()


async def test_a_failing_deployment_opens_only_its_own_breaker() -> None:
    b = _deployment_breakers()
    for _ in range(2):
        await _fail_under(b, "east/llama")
    assert b.health("east/llama").state is BreakerState.OPEN
    assert b.health("east").state is BreakerState.CLOSED  # the provider's other models
    assert b.callable("west/llama") and not b.callable("east/llama")
    # A model is as callable as its best deployment.
    assert b.deployment_health(("east/llama", "west/llama")).state is BreakerState.CLOSED
    assert b.deployment_health(("east/llama",)).state is BreakerState.OPEN
    snapshot = b.snapshot()
    assert snapshot["east/llama"].state is BreakerState.OPEN
    assert snapshot["east"].state is BreakerState.CLOSED


async def test_provider_with_model_scope_reports_its_healthiest_model() -> None:
    b = _deployment_breakers()
    for _ in range(2):
        await _fail_under(b, "west/llama")
    assert b.provider_health("west").state is BreakerState.CLOSED  # mistral still serves
    for _ in range(2):
        await _fail_under(b, "west/mistral")
    assert b.provider_health("west").state is BreakerState.OPEN


async def test_cooldown_is_per_key_and_blocks_half_open_probes_too() -> None:
    clock = Clock()
    b = _deployment_breakers(clock)
    b.cool_down("east/llama", 1.0)
    assert not b.callable("east/llama") and b.callable("east")
    with pytest.raises(ProviderUnavailable) as info:
        with b.guard("east/llama"):
            pass
    assert info.value.metadata["breaker"] == "cooling_down"
    clock.now += 1.5
    assert b.callable("east/llama")


async def test_observer_hears_outcomes_rejections_cooldowns_and_changes() -> None:
    from quorum.server.resilience.breakers import BreakerObserver

    seen: list[tuple[str, ...]] = []

    class Recorder(BreakerObserver):
        def state_changed(self, key: str, old: BreakerState, new: BreakerState) -> None:
            seen.append(("state", key, new.value))

        def call_succeeded(self, key: str) -> None:
            seen.append(("ok", key))

        def call_failed(self, key: str, error: BaseException) -> None:
            seen.append(("failed", key))

        def rejected(self, key: str, why: str) -> None:
            seen.append(("rejected", key, why))

        def cooled_down(self, key: str, seconds: float) -> None:
            seen.append(("cool", key))

    b = _breakers(fail_max=1)
    b.observe(Recorder())
    with b.guard("p"):
        await asyncio.sleep(0)
    await _fail_under(b, "p")
    with pytest.raises(ProviderUnavailable):
        with b.guard("p"):
            pass
    b.cool_down("p", 1.0)
    assert seen == [
        ("ok", "p"),
        ("failed", "p"),
        ("state", "p", "open"),
        ("rejected", "p", "open"),
        ("cool", "p"),
    ]


async def test_steady_snapshot_is_shared_until_a_breaker_event() -> None:
    clock = Clock()
    b = _breakers(fail_max=3, clock=clock)

    async def ok() -> None:
        await asyncio.sleep(0)

    first = b.snapshot()
    assert b.snapshot() is first  # nothing happened: the same snapshot
    with pytest.raises(ProviderUnavailable):
        await _call(b, _failing)
    counted = b.snapshot()
    assert counted is not first
    assert counted["p"].failure_count == 1
    await _call(b, ok)  # a success resets the count, and the snapshot says so
    assert b.snapshot()["p"].failure_count == 0


def test_cool_down_shows_at_once_and_ends_with_the_clock() -> None:
    clock = Clock()
    b = _breakers(clock=clock)
    assert b.snapshot()["p"].state is BreakerState.CLOSED
    b.cool_down("p", 2.0)
    assert b.health("p").state is BreakerState.COOLING_DOWN
    assert b.snapshot()["p"].cooldown_remaining_s == pytest.approx(2.0)
    clock.now += 1.5
    assert b.health("p").cooldown_remaining_s == pytest.approx(0.5)
    clock.now += 1.0
    assert b.health("p").state is BreakerState.CLOSED
    assert b.snapshot()["p"].state is BreakerState.CLOSED


def test_a_huge_retry_after_is_capped() -> None:
    # "Retry-After: 99999999999" must not retire a deployment until the next restart.
    clock = Clock()
    b = _breakers(clock=clock)
    b.cool_down("p", 99_999_999_999.0)
    assert b.health("p").cooldown_remaining_s == pytest.approx(MAX_COOLDOWN_S)
    clock.now += MAX_COOLDOWN_S + 0.1
    assert b.health("p").state is BreakerState.CLOSED


def _refusal(b: Breakers) -> str:
    with pytest.raises(ProviderUnavailable) as info, b.guard("p"):
        pass
    assert info.value.metadata["breaker"] == "cooling_down"
    return info.value.message


def test_a_refusal_while_cooling_down_says_what_started_it() -> None:
    # An account out of credit (Anthropic answers it with a 400) is no 429: a caller
    # told of a rate limit looks for the wrong problem.
    clock = Clock()
    b = _breakers(clock=clock)
    b.cool_down("p", 60.0, "the account ran out of quota or credit (HTTP 400)")
    clock.now += 2.5
    message = _refusal(b)
    assert (
        message
        == "p: cooling down for 57.5s after the account ran out of quota or credit (HTTP 400)"
    )
    assert "429" not in message
    b.cool_down("p", 5.0)  # a shorter 429 changes neither the cool-down nor its cause
    assert "ran out of quota" in _refusal(b)
    b.cool_down("p", 120.0)  # a longer one does
    assert _refusal(b) == "p: cooling down for 120.0s after a 429 (rate limited)"


class _Shared:
    """Just enough of a SharedBackend to hand the breakers a refresh from elsewhere."""

    def __init__(self) -> None:
        self.on_sync: Callable[[Mapping[str, float]], None] | None = None

    def storage(self, key: str) -> pybreaker.CircuitBreakerStorage:
        return pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)

    def publish_cooldown(self, key: str, until_epoch: float) -> None:
        pass

    def subscribe(self, on_sync: Callable[[Mapping[str, float]], None]) -> None:
        self.on_sync = on_sync

    def probe_lease(self, key: str) -> bool:
        return True

    def probe_started(self, key: str, hold_s: float) -> None:
        pass

    def probe_held_elsewhere(self, key: str) -> bool:
        return False

    def release_probe(self, key: str, after_s: float = 0.0) -> None:
        pass


def test_a_cool_down_from_another_replica_does_not_claim_a_429() -> None:
    # Shared cool-downs carry no cause: the refusal says where it came from, no more.
    shared = _Shared()
    b = Breakers({"p": BreakerConfig()}, shared=shared)
    assert shared.on_sync is not None
    shared.on_sync({"p": time.time() + 30.0})
    message = _refusal(b)
    assert "another replica" in message and "429 (" not in message
