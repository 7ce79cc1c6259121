"""Spreading a model's calls over its deployments.

Three policies, chosen per model in config (``models.<name>.balance``):

* ``weighted``: random, in proportion to the deployments' weights;
* ``least_outstanding``: the deployment with the fewest calls in flight per unit of
  weight (ties broken at random);
* ``lowest_latency``: the lowest moving-average latency (of whole answers for unary
  calls, of the time to the first chunk for streams); a deployment without samples goes
  first, and one call in ten is spread by weight so a deployment that was slow once is
  measured again.

Only deployments whose breaker would let a call through are offered; the caller
excludes those it already tried.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from quorum.server.catalog import Deployment, ModelSpec
from quorum.server.resilience.latency import LatencyTracker

EXPLORE_SHARE = 0.1


def whole_answers(deployment: Deployment) -> str:
    """The latency series of ``deployment``'s unary calls: how long a whole answer takes."""
    return deployment.key


class Balancer:
    """Chooses a deployment per call and counts calls in flight per deployment."""

    def __init__(self, latency: LatencyTracker, rng: random.Random | None = None) -> None:
        self._latency = latency
        self._rng = rng or random.Random()
        self._outstanding: dict[str, int] = {}

    def outstanding(self, deployment: Deployment) -> int:
        return self._outstanding.get(deployment.key, 0)

    def track(self, deployment: Deployment) -> _Tracked:
        """Count a call in flight on ``deployment`` for the duration of a ``with`` block."""
        return _Tracked(self._outstanding, deployment.key)

    def choose(
        self,
        spec: ModelSpec,
        usable: Sequence[Deployment],
        *,
        series: Callable[[Deployment], str] = whole_answers,
    ) -> Deployment:
        """One of ``usable`` (non-empty) by ``spec``'s policy; ``lowest_latency`` compares
        the deployments' ``series`` (a stream's is its time to the first chunk)."""
        if len(usable) == 1:
            return usable[0]
        if spec.balance == "least_outstanding":
            return self._least_outstanding(usable)
        if spec.balance == "lowest_latency" and self._rng.random() >= EXPLORE_SHARE:
            return self._lowest_latency(usable, series)
        return self._weighted(usable)

    def _weighted(self, usable: Sequence[Deployment]) -> Deployment:
        return self._rng.choices(list(usable), weights=[d.weight for d in usable])[0]

    def _least_outstanding(self, usable: Sequence[Deployment]) -> Deployment:
        def load(d: Deployment) -> float:
            return self.outstanding(d) / d.weight

        lowest = min(load(d) for d in usable)
        return self._weighted([d for d in usable if load(d) == lowest])

    def _lowest_latency(
        self, usable: Sequence[Deployment], series: Callable[[Deployment], str]
    ) -> Deployment:
        ewma = {d.key: self._latency.ewma(series(d)) for d in usable}
        unmeasured = [d for d in usable if ewma[d.key] is None]
        if unmeasured:
            return self._weighted(unmeasured)
        return min(usable, key=lambda d: (ewma[d.key] or 0.0, -d.weight))


class _Tracked:
    """The ``with`` block of :meth:`Balancer.track`."""

    __slots__ = ("_counts", "_key")

    def __init__(self, counts: dict[str, int], key: str) -> None:
        self._counts = counts
        self._key = key

    def __enter__(self) -> None:
        self._counts[self._key] = self._counts.get(self._key, 0) + 1

    def __exit__(self, *exc: object) -> None:
        self._counts[self._key] -= 1
