"""Per-provider circuit breakers: pybreaker, wrapped once for asyncio.

pybreaker's ``call()`` does not await coroutines, so every upstream call runs as::

    with breakers.guard(provider):
        await adapter.complete(request)

``breaker.calling()`` counts an exception raised inside the block as a failure and opens
the breaker at ``fail_max``. What counts: 5xx, timeouts, connection errors and malformed
bodies. What does not: 4xx other than 429 (the request's fault, not the provider's),
429 (handled by a cool-down instead), and cancellation (the caller went away).

Half-open lets exactly one probe through; concurrent calls are refused until it ends.
A 429 with Retry-After puts the provider in a cool-down for that long. States are
readable as a frozen snapshot for the planner and reported to listeners for logs and
metrics.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pybreaker
import structlog

from quorum.server.config import BreakerConfig
from quorum.server.domain import BreakerState
from quorum.server.errors import ProviderError, ProviderUnavailable

log = structlog.get_logger("quorum.breakers")

_STATES = {
    pybreaker.STATE_CLOSED: BreakerState.CLOSED,
    pybreaker.STATE_OPEN: BreakerState.OPEN,
    pybreaker.STATE_HALF_OPEN: BreakerState.HALF_OPEN,
}


def _not_a_provider_fault(exc: BaseException) -> bool:
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return True
    return isinstance(exc, ProviderError) and not exc.counts_for_breaker


@dataclass(frozen=True, slots=True)
class ProviderHealth:
    """A provider's breaker as the planner sees it."""

    state: BreakerState
    failure_count: int
    cooldown_remaining_s: float


StateListener = Callable[[str, BreakerState, BreakerState], None]


class _Listener(pybreaker.CircuitBreakerListener):
    def __init__(self, notify: Callable[[str, str, str], None]) -> None:
        self._notify = notify

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        old = old_state.name if old_state is not None else pybreaker.STATE_CLOSED
        self._notify(cb.name, old, new_state.name)


class Breakers:
    """One breaker per provider, plus Retry-After cool-downs."""

    def __init__(
        self,
        providers: Mapping[str, BreakerConfig],
        *,
        storage_factory: Callable[[str], pybreaker.CircuitBreakerStorage] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._listeners: list[StateListener] = []
        self._cooldown_until: dict[str, float] = {}
        self._probing: set[str] = set()
        listener = _Listener(self._on_change)
        self._breakers: dict[str, pybreaker.CircuitBreaker] = {}
        for name, cfg in providers.items():
            kwargs: dict[str, Any] = {}
            if storage_factory is not None:
                kwargs["state_storage"] = storage_factory(name)
            self._breakers[name] = pybreaker.CircuitBreaker(
                fail_max=cfg.fail_max,
                reset_timeout=cfg.reset_timeout_s,
                exclude=[_not_a_provider_fault],
                listeners=[listener],
                name=name,
                throw_new_error_on_trip=False,
                **kwargs,
            )

    def add_listener(self, listener: StateListener) -> None:
        """Call ``listener(provider, old, new)`` on every state change."""
        self._listeners.append(listener)

    def _on_change(self, name: str, old: str, new: str) -> None:
        old_state, new_state = _STATES.get(old, BreakerState.CLOSED), _STATES[new]
        log.warning(
            "breaker_state_changed", provider=name, old=old_state.value, new=new_state.value
        )
        for listener in self._listeners:
            listener(name, old_state, new_state)

    def _effective_state(self, name: str) -> BreakerState:
        breaker = self._breakers[name]
        state = breaker.current_state
        if state == pybreaker.STATE_OPEN:
            opened_at = breaker._state_storage.opened_at
            if opened_at is not None:
                elapsed = time.time() - opened_at.timestamp()
                if elapsed >= breaker.reset_timeout:
                    return BreakerState.HALF_OPEN
            return BreakerState.OPEN
        return _STATES.get(state, BreakerState.CLOSED)

    def health(self, name: str) -> ProviderHealth:
        """The provider's state now, cool-downs included."""
        remaining = max(0.0, self._cooldown_until.get(name, 0.0) - self._clock())
        state = self._effective_state(name)
        if remaining > 0 and state is BreakerState.CLOSED:
            state = BreakerState.COOLING_DOWN
        return ProviderHealth(state, int(self._breakers[name].fail_counter), remaining)

    def snapshot(self) -> dict[str, ProviderHealth]:
        """Every provider's health, for a planner snapshot."""
        return {name: self.health(name) for name in self._breakers}

    def cool_down(self, name: str, seconds: float) -> None:
        """Hold calls to ``name`` for ``seconds`` (from a 429's Retry-After)."""
        until = self._clock() + max(0.0, seconds)
        if until > self._cooldown_until.get(name, 0.0):
            self._cooldown_until[name] = until
            log.info("provider_cooling_down", provider=name, seconds=round(seconds, 3))

    @contextmanager
    def guard(self, name: str) -> Iterator[None]:
        """Run the block under ``name``'s breaker; raise if the provider is not callable."""
        health = self.health(name)
        if health.state is BreakerState.COOLING_DOWN:
            raise ProviderUnavailable(
                f"{name}: cooling down for {health.cooldown_remaining_s:.1f}s after a 429",
                provider=name,
                metadata={"breaker": "cooling_down"},
            )
        if health.state is BreakerState.OPEN:
            raise ProviderUnavailable(
                f"{name}: circuit breaker open", provider=name, metadata={"breaker": "open"}
            )
        probe = health.state is BreakerState.HALF_OPEN
        if probe:
            if name in self._probing:
                raise ProviderUnavailable(
                    f"{name}: circuit breaker half-open, a probe is in flight",
                    provider=name,
                    metadata={"breaker": "half_open"},
                )
            self._probing.add(name)
        try:
            with self._breakers[name].calling():
                yield
        except pybreaker.CircuitBreakerError:
            raise ProviderUnavailable(
                f"{name}: circuit breaker open", provider=name, metadata={"breaker": "open"}
            ) from None
        finally:
            if probe:
                self._probing.discard(name)
