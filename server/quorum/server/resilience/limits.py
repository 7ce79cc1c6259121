"""Client-side limits per provider, and the retry budget.

:class:`ProviderLimiter` enforces a provider's configured concurrency and
requests/tokens-per-minute limits. A call that does not fit waits in a bounded FIFO
queue, for at most ``max_queue_wait_s`` and never past the caller's deadline; when the
queue is full or the wait runs out it is refused with a :class:`ProviderUnavailable`
carrying ``metadata["limit"]`` and a ``retry_after_s`` hint. The executor then fails over
to the next candidate, and answers RESOURCE_EXHAUSTED with RetryInfo when every
candidate is saturated — load is shed, the process does not collapse.

:class:`RetryBudget` caps retries to a share of first calls (a token bucket), so a
struggling provider is not hammered by retries.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from quorum.server.config import LimitsConfig
from quorum.server.errors import ProviderUnavailable

CONCURRENCY_RETRY_HINT_S = 1.0


class TokenBucket:
    """``per_minute`` tokens a minute, refilled continuously, bursting to a minute's worth."""

    def __init__(self, per_minute: float, clock: Callable[[], float]) -> None:
        self.capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._tokens = self.capacity
        self._clock = clock
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self._rate)
        self._at = now

    def fits(self, n: float) -> bool:
        self._refill()
        return self._tokens >= min(n, self.capacity)

    def take(self, n: float) -> None:
        self._refill()
        self._tokens -= min(n, self.capacity)

    def refund(self, n: float) -> None:
        """Give back ``n`` (negative ``n`` charges more): an estimate corrected by usage."""
        self._refill()
        self._tokens = min(self.capacity, self._tokens + n)

    def wait_s(self, n: float) -> float:
        """Seconds until ``n`` tokens are available."""
        self._refill()
        missing = min(n, self.capacity) - self._tokens
        return max(0.0, missing / self._rate) if missing > 0 else 0.0


@dataclass(slots=True)
class Permit:
    """A granted call slot; release it when the call ends, with the tokens it used."""

    limiter: ProviderLimiter
    tokens: int
    released: bool = False

    def release(self, used_tokens: int | None = None) -> None:
        if self.released:
            return
        self.released = True
        self.limiter._release(self.tokens, used_tokens)


class _Waiter:
    __slots__ = ("event", "tokens")

    def __init__(self, tokens: int) -> None:
        self.tokens = tokens
        self.event = asyncio.Event()


class ProviderLimiter:
    """Concurrency and per-minute limits of one provider, with a bounded wait queue."""

    def __init__(
        self, name: str, config: LimitsConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        self._config = config
        self._clock = clock
        self._in_flight = 0
        self._waiters: deque[_Waiter] = deque()
        self._rpm = (
            TokenBucket(config.requests_per_minute, clock) if config.requests_per_minute else None
        )
        self._tpm = (
            TokenBucket(config.tokens_per_minute, clock) if config.tokens_per_minute else None
        )

    @property
    def limited(self) -> bool:
        c = self._config
        return bool(c.max_concurrency or self._rpm or self._tpm)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def _fits(self, tokens: int) -> bool:
        cap = self._config.max_concurrency
        if cap is not None and self._in_flight >= cap:
            return False
        if self._rpm is not None and not self._rpm.fits(1):
            return False
        return self._tpm is None or self._tpm.fits(tokens)

    def _take(self, tokens: int) -> Permit:
        self._in_flight += 1
        if self._rpm is not None:
            self._rpm.take(1)
        if self._tpm is not None:
            self._tpm.take(tokens)
        return Permit(self, tokens)

    def _rate_wait_s(self, tokens: int) -> float:
        waits = [0.0]
        if self._rpm is not None:
            waits.append(self._rpm.wait_s(1))
        if self._tpm is not None:
            waits.append(self._tpm.wait_s(tokens))
        return max(waits)

    def _refusal(self, tokens: int, why: str) -> ProviderUnavailable:
        cap = self._config.max_concurrency
        if cap is not None and self._in_flight >= cap:
            limit, detail = "concurrency", f"{self._in_flight}/{cap} calls in flight"
            retry_after = CONCURRENCY_RETRY_HINT_S
        elif self._rpm is not None and not self._rpm.fits(1):
            limit, detail = "requests_per_minute", f"{self._config.requests_per_minute} a minute"
            retry_after = self._rpm.wait_s(1)
        else:
            limit, detail = "tokens_per_minute", f"{self._config.tokens_per_minute} a minute"
            retry_after = self._tpm.wait_s(tokens) if self._tpm is not None else 0.0
        return ProviderUnavailable(
            f"{self.name}: at its {limit.replace('_', ' ')} limit ({detail}); {why}",
            provider=self.name,
            metadata={"limit": limit, "retry_after_s": f"{max(retry_after, 0.001):.3f}"},
        )

    def try_acquire(self, tokens: int) -> Permit | None:
        """A permit now, or None: for callers that would rather go elsewhere than wait."""
        if not self._waiters and self._fits(tokens):
            return self._take(tokens)
        return None

    async def acquire(self, tokens: int, max_wait_s: float) -> Permit:
        """A permit, waiting in the queue for at most ``max_wait_s`` (and the config's
        ``max_queue_wait_s``); raises :class:`ProviderUnavailable` when refused."""
        permit = self.try_acquire(tokens)
        if permit is not None:
            return permit
        wait = min(max_wait_s, self._config.max_queue_wait_s)
        if len(self._waiters) >= self._config.max_queue:
            raise self._refusal(tokens, f"queue of {self._config.max_queue} full")
        if wait <= 0:
            raise self._refusal(tokens, "no time left to queue")
        waiter = _Waiter(tokens)
        self._waiters.append(waiter)
        deadline = self._clock() + wait
        try:
            while True:
                if self._waiters[0] is waiter and self._fits(tokens):
                    return self._take(tokens)
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise self._refusal(tokens, f"waited {wait:.3f}s in the queue")
                delay = remaining
                if self._waiters[0] is waiter:
                    rate_wait = self._rate_wait_s(tokens)
                    if rate_wait > 0:
                        delay = min(delay, rate_wait + 0.001)
                waiter.event.clear()
                try:
                    async with asyncio.timeout(delay):
                        await waiter.event.wait()
                except TimeoutError:
                    pass
        finally:
            self._waiters.remove(waiter)
            self._wake_head()

    def _wake_head(self) -> None:
        if self._waiters:
            self._waiters[0].event.set()

    def _release(self, tokens: int, used_tokens: int | None) -> None:
        self._in_flight -= 1
        if self._tpm is not None and used_tokens is not None:
            self._tpm.refund(tokens - used_tokens)
        self._wake_head()


class RetryBudget:
    """Retries allowed as a share of first calls: a token bucket.

    Every first call earns ``ratio`` of a retry; ``min_per_s`` more accrue each second
    so a quiet service can still retry. The bucket holds at most ``max(10, 10 s of
    min_per_s)``: a burst of retries is possible, a sustained storm is held to the ratio.
    """

    def __init__(
        self, ratio: float, min_per_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ratio = ratio
        self._min_per_s = min_per_s
        self.capacity = max(10.0, 10.0 * min_per_s)
        self._balance = self.capacity
        self._clock = clock
        self._at = clock()
        self.spent = 0
        self.refused = 0

    def _refill(self) -> None:
        now = self._clock()
        self._balance = min(self.capacity, self._balance + (now - self._at) * self._min_per_s)
        self._at = now

    def deposit(self) -> None:
        """A first call was made."""
        self._refill()
        self._balance = min(self.capacity, self._balance + self._ratio)

    def try_spend(self) -> bool:
        """Take one retry if the budget allows."""
        self._refill()
        if self._balance >= 1.0:
            self._balance -= 1.0
            self.spent += 1
            return True
        self.refused += 1
        return False
