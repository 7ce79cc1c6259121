"""Frozen snapshots of live state, the only view of the world the planner gets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field

from quorum.server.catalog import ModelSpec
from quorum.server.domain import BreakerState
from quorum.server.resilience.breakers import ProviderHealth, best_health
from quorum.server.values import value_type

_HEALTHY = ProviderHealth(BreakerState.CLOSED, 0, 0.0)


def route_key(agent: str, tier: str) -> str:
    """Key of a cascade route (agent × tier) in :attr:`StateSnapshot.escalation_rates`."""
    return f"{agent}/{tier}"


def model_breakers(model: ModelSpec) -> tuple[str, ...]:
    """The breakers ``model`` runs under: one per deployment (its provider's, or with
    ``deployments`` or breaker scope ``model`` one of its own, ``provider/model_id``)."""
    return model.breakers


def accuracy_key(model: str, task: str) -> str:
    """Key of a model's observed accuracy on a task in :attr:`StateSnapshot.model_accuracy`."""
    return f"{model}/{task}"


@value_type
class StateSnapshot:
    """Breaker states and observed rates at the moment a request is planned.

    ``providers`` holds every breaker's health by key: each provider's (what the Plan RPC
    lists), then each deployment breaker's (``provider/model_id``). A model is judged by
    the breakers it runs under (:meth:`model_health`), not by its provider's.
    ``escalation_rates`` holds, per cascade route (:func:`route_key`), the share of
    recent cascades whose gate failed at that tier; ``model_accuracy`` the share of
    recent consensus votes a model's answer agreed with the winner, per task
    (:func:`accuracy_key`); ``model_quality`` the share of a model's recent answers on a
    task that passed the quality gate or earned good feedback (same keys);
    ``model_latency_ms`` and ``model_cost_usd`` the exponentially weighted latency and
    cost (USD) of a model's recent answers on a task (same keys). All list only keys with
    enough samples to trust.
    ``budget_used_share`` is the share of the budget already spent (0: no pressure).
    """

    providers: Mapping[str, ProviderHealth] = field(default_factory=dict)
    escalation_rates: Mapping[str, float] = field(default_factory=dict)
    model_accuracy: Mapping[str, float] = field(default_factory=dict)
    model_quality: Mapping[str, float] = field(default_factory=dict)
    model_latency_ms: Mapping[str, float] = field(default_factory=dict)
    model_cost_usd: Mapping[str, float] = field(default_factory=dict)
    budget_used_share: float = 0.0

    def health(self, provider: str) -> ProviderHealth:
        """One breaker's health (a provider's, or a deployment's by its key)."""
        return self.providers.get(provider, _HEALTHY)

    def model_health(self, model: ModelSpec) -> ProviderHealth:
        """``model``'s health (see :func:`model_health`)."""
        return model_health(self.providers, model)


def model_health(breakers: Mapping[str, ProviderHealth], model: ModelSpec) -> ProviderHealth:
    """``model``'s health among ``breakers`` (every breaker's health by key): the
    healthiest of its deployments' breakers (closed first, then half-open, cooling down,
    open), since a call goes to any deployment whose breaker lets it through. With one
    deployment under its provider's breaker, that breaker's health."""
    keys = model_breakers(model)
    if len(keys) == 1:
        return breakers.get(keys[0], _HEALTHY)
    return best_health(breakers.get(k, _HEALTHY) for k in keys)
