"""The model catalog: config compiled once into frozen, fast lookups.

Prices, tiers, capabilities and sensitivities are resolved at config load so the
request path does no pydantic or YAML work.

A model is reached through one or more :class:`Deployment` s (the same model through
two providers or regions, or several local replicas). Each deployment names the
breaker it runs under: the provider's own, or — for deployments listed explicitly
and for providers whose breaker scope is ``model`` — one of its own, keyed
``provider/model_id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from typing import Literal

from quorum.server.config import (
    Config,
    DeploymentConfig,
    HedgeConfig,
    ModelConfig,
    SimulatedBehaviour,
)
from quorum.server.domain import Capability, Difficulty, Sensitivity, Usage
from quorum.server.values import value_type

_SENSITIVITY = {
    "public": Sensitivity.PUBLIC,
    "internal": Sensitivity.INTERNAL,
    "restricted": Sensitivity.RESTRICTED,
}
_DIFFICULTY = {"low": Difficulty.LOW, "medium": Difficulty.MEDIUM, "high": Difficulty.HIGH}


BalanceName = Literal["weighted", "least_outstanding", "lowest_latency"]
StreamFailover = Literal["restart", "error"]


@value_type
class Deployment:
    """One way to reach a model: provider, the provider's model id, weight and breaker."""

    provider: str
    provider_kind: str
    model_id: str
    weight: float
    breaker: str
    simulated: bool = False

    @property
    def key(self) -> str:
        """``provider/model_id``: names the deployment in stats and logs."""
        return f"{self.provider}/{self.model_id}"


@value_type
class HedgePolicy:
    """When to send a hedged second request (see :class:`~quorum.server.config.HedgeConfig`)."""

    delay_s: float | None
    min_delay_s: float
    initial_delay_s: float
    min_samples: int


@value_type
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
    max_output_tokens: int | None  # None: not configured, not checked
    capabilities: frozenset[Capability]
    max_sensitivity: Sensitivity
    weight: float
    simulated: SimulatedBehaviour | None
    quality_prior: float = 0.85
    deployments: tuple[Deployment, ...] = ()
    balance: BalanceName = "weighted"
    hedge: HedgePolicy | None = None
    stream_failover: StreamFailover = "restart"
    cached_input_usd_per_mtok: float | None = None  # None: the input price
    cache_write_usd_per_mtok: float | None = None  # None: the input price
    # Derived from the fields above, once (the planner reads it for every candidate).
    breakers: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The breakers the model runs under: one per deployment (its provider's, or with
        # ``deployments`` or breaker scope ``model`` one of its own), else its provider's.
        breakers = tuple(d.breaker for d in self.deployments) or (self.provider,)
        object.__setattr__(self, "breakers", breakers)

    def cost(self, usage: Usage) -> float:
        """USD cost of the given token usage: input read from or written to the
        provider's prompt cache at its own prices."""
        cached, written = usage.cached_input_tokens, usage.cache_write_tokens
        if not cached and not written:
            return (
                usage.input_tokens * self.input_usd_per_mtok
                + usage.output_tokens * self.output_usd_per_mtok
            ) / 1_000_000
        fresh = max(0, usage.input_tokens - cached - written)
        read_price = self.cached_input_usd_per_mtok
        write_price = self.cache_write_usd_per_mtok
        return (
            fresh * self.input_usd_per_mtok
            + cached * (self.input_usd_per_mtok if read_price is None else read_price)
            + written * (self.input_usd_per_mtok if write_price is None else write_price)
            + usage.output_tokens * self.output_usd_per_mtok
        ) / 1_000_000

    def estimate_cost(self, input_tokens: int, output_tokens: int) -> float:
        """``cost(Usage(input_tokens, output_tokens))``, without building the Usage."""
        return (
            input_tokens * self.input_usd_per_mtok + output_tokens * self.output_usd_per_mtok
        ) / 1_000_000

    @property
    def blended_price(self) -> float:
        """A single price for ordering: 1 part input, 3 parts output (typical chat mix)."""
        return (self.input_usd_per_mtok + 3 * self.output_usd_per_mtok) / 4


@value_type
class Catalog:
    """All models, tiers cheapest first, and the premium baseline."""

    models: Mapping[str, ModelSpec]
    tiers: tuple[str, ...]
    by_tier: Mapping[str, tuple[ModelSpec, ...]]
    baseline: ModelSpec
    difficulty_tiers: Mapping[Difficulty, str]
    # Derived from the fields above, once (the planner reads it for every request).
    _ordered: tuple[ModelSpec, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ordered = tuple(m for tier in self.tiers for m in self.by_tier[tier])
        object.__setattr__(self, "_ordered", ordered)

    def tier_rank(self, tier: str) -> int:
        return self.tiers.index(tier)

    def ordered(self) -> tuple[ModelSpec, ...]:
        """Every model, cheapest tier first, cheapest first within a tier."""
        return self._ordered


def _deployments(config: Config, name: str, m: ModelConfig) -> tuple[Deployment, ...]:
    explicit = bool(m.deployments)
    routes = m.deployments or [DeploymentConfig(provider=m.provider, model_id=m.model_id)]
    out: list[Deployment] = []
    for route in routes:
        provider = config.providers[route.provider]
        model_id = route.model_id or m.model_id or name
        own_breaker = explicit or provider.breaker.scope == "model"
        out.append(
            Deployment(
                provider=route.provider,
                provider_kind=provider.kind,
                model_id=model_id,
                weight=route.weight,
                breaker=f"{route.provider}/{model_id}" if own_breaker else route.provider,
                simulated=provider.kind == "simulated",
            )
        )
    return tuple(out)


def _hedge(cfg: HedgeConfig | None) -> HedgePolicy | None:
    if cfg is None:
        return None
    return HedgePolicy(
        delay_s=cfg.delay_ms / 1000.0 if cfg.delay_ms is not None else None,
        min_delay_s=cfg.min_delay_ms / 1000.0,
        initial_delay_s=cfg.initial_delay_ms / 1000.0,
        min_samples=cfg.min_samples,
    )


def breaker_keys(catalog: Catalog) -> dict[str, str]:
    """Every breaker a deployment runs under that is not a provider's own, by key → provider."""
    return {
        d.breaker: d.provider
        for m in catalog.models.values()
        for d in m.deployments
        if d.breaker != d.provider
    }


def _tier_prior(rank: int, tiers: int) -> float:
    """Cold-start quality: 0.75 for the cheapest tier up to 0.95 for the most capable."""
    return 0.75 + 0.2 * (rank / (tiers - 1) if tiers > 1 else 1.0)


# What each vendor bills for prompt-cache reads and writes, as a share of the input price,
# when the config does not say: OpenAI reads at half (gpt-4o; newer models less, so set
# the price for those), Anthropic reads at a tenth and writes at 1.25 (five-minute cache),
# Gemini reads at a quarter. Writes elsewhere cost the input price.
_CACHE_READ_SHARE = {"openai": 0.5, "anthropic": 0.1, "gemini": 0.25}
_CACHE_WRITE_SHARE = {"anthropic": 1.25}


def _cache_price(configured: float | None, input_price: float, kind: str, *, read: bool) -> float:
    if configured is not None:
        return configured
    share = (_CACHE_READ_SHARE if read else _CACHE_WRITE_SHARE).get(kind, 1.0)
    return input_price * share


def build_catalog(config: Config) -> Catalog:
    """Compile the validated config into a catalog."""
    tiers = tuple(config.tiers)
    models: dict[str, ModelSpec] = {}
    for name, m in config.models.items():
        deployments = _deployments(config, name, m)
        first = deployments[0]
        provider = config.providers[first.provider]
        models[name] = ModelSpec(
            name=name,
            provider=first.provider,
            provider_kind=provider.kind,
            model_id=first.model_id,
            tier=m.tier,
            tier_rank=tiers.index(m.tier),
            input_usd_per_mtok=m.input_usd_per_mtok,
            output_usd_per_mtok=m.output_usd_per_mtok,
            cached_input_usd_per_mtok=_cache_price(
                m.cached_input_usd_per_mtok, m.input_usd_per_mtok, provider.kind, read=True
            ),
            cache_write_usd_per_mtok=_cache_price(
                m.cache_write_usd_per_mtok, m.input_usd_per_mtok, provider.kind, read=False
            ),
            context_window=m.context_window,
            max_output_tokens=m.max_output_tokens,
            capabilities=frozenset(Capability(c) for c in m.capabilities),
            max_sensitivity=_SENSITIVITY[m.max_sensitivity],
            weight=m.weight,
            quality_prior=m.quality_prior
            if m.quality_prior is not None
            else _tier_prior(tiers.index(m.tier), len(tiers)),
            simulated=(m.simulated or SimulatedBehaviour())
            if provider.kind == "simulated"
            else None,
            deployments=deployments,
            balance=m.balance,
            hedge=_hedge(m.hedge),
            stream_failover=m.stream_failover,
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
