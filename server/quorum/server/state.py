"""Frozen snapshots of live state, the only view of the world the planner gets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from quorum.server.breakers import ProviderHealth
from quorum.server.domain import BreakerState

_HEALTHY = ProviderHealth(BreakerState.CLOSED, 0, 0.0)


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    """Breaker states and observed rates at the moment a request is planned."""

    providers: Mapping[str, ProviderHealth] = field(default_factory=dict)
    escalation_rates: Mapping[str, float] = field(default_factory=dict)

    def health(self, provider: str) -> ProviderHealth:
        return self.providers.get(provider, _HEALTHY)
