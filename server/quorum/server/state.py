"""Frozen snapshots of live state, the only view of the world the planner gets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field

from quorum.server.domain import BreakerState
from quorum.server.resilience.breakers import ProviderHealth
from quorum.server.values import value_type

_HEALTHY = ProviderHealth(BreakerState.CLOSED, 0, 0.0)


def route_key(agent: str, tier: str) -> str:
    """Key of a cascade route (agent × tier) in :attr:`StateSnapshot.escalation_rates`."""
    return f"{agent}/{tier}"


def accuracy_key(model: str, task: str) -> str:
    """Key of a model's observed accuracy on a task in :attr:`StateSnapshot.model_accuracy`."""
    return f"{model}/{task}"


@value_type
class StateSnapshot:
    """Breaker states and observed rates at the moment a request is planned.

    ``escalation_rates`` holds, per cascade route (:func:`route_key`), the share of
    recent cascades whose gate failed at that tier; ``model_accuracy`` the share of
    recent consensus votes a model's answer agreed with the winner, per task
    (:func:`accuracy_key`); ``model_quality`` the share of a model's recent answers on a
    task that passed the quality gate or earned good feedback (same keys). All list only
    keys with enough samples to trust.
    ``budget_used_share`` is the share of the budget already spent (0: no pressure).
    """

    providers: Mapping[str, ProviderHealth] = field(default_factory=dict)
    escalation_rates: Mapping[str, float] = field(default_factory=dict)
    model_accuracy: Mapping[str, float] = field(default_factory=dict)
    model_quality: Mapping[str, float] = field(default_factory=dict)
    budget_used_share: float = 0.0

    def health(self, provider: str) -> ProviderHealth:
        return self.providers.get(provider, _HEALTHY)
