"""The model catalog: config compiled once into frozen, fast lookups.

Prices, tiers, capabilities and sensitivities are resolved at config load so the
request path does no pydantic or YAML work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from quorum.server.config import Config, SimulatedBehaviour
from quorum.server.domain import Capability, Difficulty, Sensitivity, Usage

_SENSITIVITY = {
    "public": Sensitivity.PUBLIC,
    "internal": Sensitivity.INTERNAL,
    "restricted": Sensitivity.RESTRICTED,
}
_DIFFICULTY = {"low": Difficulty.LOW, "medium": Difficulty.MEDIUM, "high": Difficulty.HIGH}


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One routable model, as the planner and executor see it."""

    name: str
    provider: str
    provider_kind: str
    model_id: str
    tier: str
    tier_rank: int
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    context_window: int
    max_output_tokens: int
    capabilities: frozenset[Capability]
    max_sensitivity: Sensitivity
    weight: float
    simulated: SimulatedBehaviour | None

    def cost(self, usage: Usage) -> float:
        """USD cost of the given token usage."""
        return (
            usage.input_tokens * self.input_usd_per_mtok
            + usage.output_tokens * self.output_usd_per_mtok
        ) / 1_000_000

    def estimate_cost(self, input_tokens: int, output_tokens: int) -> float:
        return self.cost(Usage(input_tokens, output_tokens))

    @property
    def blended_price(self) -> float:
        """A single price for ordering: 1 part input, 3 parts output (typical chat mix)."""
        return (self.input_usd_per_mtok + 3 * self.output_usd_per_mtok) / 4


@dataclass(frozen=True, slots=True)
class Catalog:
    """All models, tiers cheapest first, and the premium baseline."""

    models: Mapping[str, ModelSpec]
    tiers: tuple[str, ...]
    by_tier: Mapping[str, tuple[ModelSpec, ...]]
    baseline: ModelSpec
    difficulty_tiers: Mapping[Difficulty, str]

    def tier_rank(self, tier: str) -> int:
        return self.tiers.index(tier)

    def ordered(self) -> tuple[ModelSpec, ...]:
        """Every model, cheapest tier first, cheapest first within a tier."""
        return tuple(m for tier in self.tiers for m in self.by_tier[tier])


def build_catalog(config: Config) -> Catalog:
    """Compile the validated config into a catalog."""
    tiers = tuple(config.tiers)
    models: dict[str, ModelSpec] = {}
    for name, m in config.models.items():
        provider = config.providers[m.provider]
        models[name] = ModelSpec(
            name=name,
            provider=m.provider,
            provider_kind=provider.kind,
            model_id=m.model_id or name,
            tier=m.tier,
            tier_rank=tiers.index(m.tier),
            input_usd_per_mtok=m.input_usd_per_mtok,
            output_usd_per_mtok=m.output_usd_per_mtok,
            context_window=m.context_window,
            max_output_tokens=m.max_output_tokens,
            capabilities=frozenset(Capability(c) for c in m.capabilities),
            max_sensitivity=_SENSITIVITY[m.max_sensitivity],
            weight=m.weight,
            simulated=(m.simulated or SimulatedBehaviour())
            if provider.kind == "simulated"
            else None,
        )
    by_tier = {
        tier: tuple(
            sorted(
                (m for m in models.values() if m.tier == tier),
                key=lambda m: (m.blended_price, m.name),
            )
        )
        for tier in tiers
    }
    if config.routing.baseline_model:
        baseline = models[config.routing.baseline_model]
    else:
        baseline = max(by_tier[tiers[-1]], key=lambda m: (m.blended_price, m.name))
    difficulty_tiers = dict.fromkeys(Difficulty, tiers[-1])
    # Without an explicit map, spread difficulties over the tiers: low → cheapest,
    # high → most capable, medium → the middle tier.
    difficulty_tiers[Difficulty.LOW] = tiers[0]
    difficulty_tiers[Difficulty.MEDIUM] = tiers[len(tiers) // 2] if len(tiers) > 2 else tiers[-1]
    for level, tier in config.routing.difficulty_tiers.items():
        difficulty_tiers[_DIFFICULTY[level]] = tier
    return Catalog(
        models=models,
        tiers=tiers,
        by_tier=by_tier,
        baseline=baseline,
        difficulty_tiers=difficulty_tiers,
    )
