"""Observed latencies per key (model or deployment): recent quantiles and a moving average.

Hedged requests wait for a model's observed p95 before sending a second call; the
``lowest_latency`` balancer prefers the deployment with the lowest moving average. A
window of recent samples per key is kept; quantiles are recomputed only after a few new
samples, so reading one on the request path costs a dict lookup.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

_RECOMPUTE_EVERY = 8


@dataclass(slots=True)
class _Series:
    samples: deque[float]
    ewma: float | None = None
    stale: int = 0
    sorted_cache: list[float] = field(default_factory=list)


class LatencyTracker:
    """Recent latencies in seconds, per key."""

    def __init__(self, window: int = 256, alpha: float = 0.2) -> None:
        self._window = window
        self._alpha = alpha
        self._series: dict[str, _Series] = {}

    def record(self, key: str, seconds: float) -> None:
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(deque(maxlen=self._window))
        series.samples.append(seconds)
        series.ewma = (
            seconds
            if series.ewma is None
            else self._alpha * seconds + (1 - self._alpha) * series.ewma
        )
        series.stale += 1

    def count(self, key: str) -> int:
        series = self._series.get(key)
        return len(series.samples) if series is not None else 0

    def ewma(self, key: str) -> float | None:
        series = self._series.get(key)
        return series.ewma if series is not None else None

    def quantile(self, key: str, q: float) -> float | None:
        """The ``q`` quantile (0..1) of the recent window, None without samples."""
        series = self._series.get(key)
        if series is None or not series.samples:
            return None
        if series.stale >= _RECOMPUTE_EVERY or not series.sorted_cache:
            series.sorted_cache = sorted(series.samples)
            series.stale = 0
        data = series.sorted_cache
        index = min(len(data) - 1, max(0, round(q * (len(data) - 1))))
        return data[index]
