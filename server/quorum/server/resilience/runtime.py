"""The live resilience state the executors share: retry policy and budgets, limits,
observed latencies and the deployment balancer.

Built once from config by :func:`build_resilience` and handed to every request through
:class:`~quorum.server.execute.calls.ExecutionContext`. An empty :class:`Resilience`
(the context's default) means no retries, no limits, nothing observed yet.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from quorum.server.catalog import ModelSpec
from quorum.server.config import Config, RetryConfig
from quorum.server.resilience.balance import Balancer
from quorum.server.resilience.latency import LatencyTracker
from quorum.server.resilience.limits import ProviderLimiter, RetryBudget

_NO_RETRY = RetryConfig()
HEDGE_QUANTILE = 0.95


@dataclass(slots=True)
class Resilience:
    """Per-provider retry policy, budgets and limiters; latencies; the balancer."""

    retry: Mapping[str, RetryConfig] = field(default_factory=dict)
    budgets: Mapping[str, RetryBudget] = field(default_factory=dict)
    limiters: Mapping[str, ProviderLimiter] = field(default_factory=dict)
    latency: LatencyTracker = field(default_factory=LatencyTracker)
    rng: random.Random = field(default_factory=random.Random)
    cold_timeout_s: Mapping[str, float] = field(default_factory=dict)
    balancer: Balancer = field(init=False)

    def __post_init__(self) -> None:
        self.balancer = Balancer(self.latency, self.rng)

    def retry_policy(self, provider: str) -> RetryConfig:
        return self.retry.get(provider, _NO_RETRY)

    def backoff_s(self, provider: str, retry_index: int) -> float:
        """Full-jitter exponential backoff before retry number ``retry_index`` (0-based)."""
        policy = self.retry_policy(provider)
        ceiling = min(policy.backoff_max_s, policy.backoff_base_s * (2**retry_index))
        return self.rng.uniform(0.0, ceiling)

    def hedge_delay_s(self, spec: ModelSpec) -> float | None:
        """How long to wait for ``spec`` before hedging; None when it does not hedge."""
        hedge = spec.hedge
        if hedge is None:
            return None
        if hedge.delay_s is not None:
            return max(hedge.delay_s, hedge.min_delay_s)
        if self.latency.count(spec.name) < hedge.min_samples:
            return max(hedge.initial_delay_s, hedge.min_delay_s)
        p95 = self.latency.quantile(spec.name, HEDGE_QUANTILE) or hedge.initial_delay_s
        return max(p95, hedge.min_delay_s)


def build_resilience(
    config: Config, *, clock: Callable[[], float] = time.monotonic, seed: int | None = None
) -> Resilience:
    """Retry budgets and limiters for every provider of ``config``."""
    return Resilience(
        retry={name: p.retry for name, p in config.providers.items()},
        budgets={
            name: RetryBudget(p.retry.budget_ratio, p.retry.budget_min_per_s, clock)
            for name, p in config.providers.items()
        },
        limiters={
            name: ProviderLimiter(name, p.limits, clock)
            for name, p in config.providers.items()
            if p.limits.max_concurrency
            or p.limits.requests_per_minute
            or p.limits.tokens_per_minute
        },
        rng=random.Random(seed),
        cold_timeout_s={name: p.breaker.cold_timeout_s for name, p in config.providers.items()},
    )
