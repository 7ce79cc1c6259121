"""Tenants: who may call and what each may use, compiled once at start-up.

Each configured tenant becomes a frozen :class:`TenantPolicy`. Its plan's rules (``free``
keeps to the cheapest tier and never runs consensus unless ``plans`` says otherwise) and
its own allow-lists are intersected into a filtered :class:`~quorum.server.catalog.Catalog`
that the planner gets instead of the whole one — per use case where the plan has a rule
for it — so the planner stays pure and never sees a model the tenant may not use.

:func:`check_request` refuses, with PERMISSION_DENIED naming each thing, a request whose
hints name a model, tier, strategy, agent, use case or tool the tenant may not use;
:func:`with_tenant_defaults` fills in the tenant's default data sensitivity before
planning. :class:`Tenants` resolves the tenant of a request from the authenticated one
(or, with authentication disabled, from ``RouteRequest.tenant``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import structlog

from quorum.server.catalog import Catalog, ModelSpec
from quorum.server.config import BudgetLimits, Config, PlanConfig, PlanRule
from quorum.server.config import builtin_plans as config_builtin_plans
from quorum.server.domain import RouteRequest, Sensitivity, Strategy
from quorum.server.errors import ConfigError, PermissionDenied, Unauthenticated
from quorum.server.service.auth import TokenVerifier, hash_key, token_digests
from quorum.server.values import value_type

log = structlog.get_logger("quorum.tenants")

ANONYMOUS = "_anonymous"
"""The tenant of requests when authentication is disabled and none is named."""

_SENSITIVITY = {
    "public": Sensitivity.PUBLIC,
    "internal": Sensitivity.INTERNAL,
    "restricted": Sensitivity.RESTRICTED,
}
_CONSENSUS = frozenset({Strategy.CONSENSUS_MAJORITY, Strategy.CONSENSUS_JUDGE})


def builtin_plans(config: Config) -> dict[str, PlanConfig]:
    """The plans every config has unless it redefines them (defined with the config, whose
    checks refuse a tenant these leave with no model, as :func:`compile_tenants` does)."""
    return config_builtin_plans(config.tiers)


@value_type
class TenantPolicy:
    """What one tenant may do, resolved against the catalog."""

    name: str
    plan: str
    catalog: Catalog
    strategies: frozenset[Strategy] | None
    agents: frozenset[str] | None = None
    tools: frozenset[str] | None = None
    use_cases: frozenset[str] | None = None
    default_sensitivity: Sensitivity | None = None
    max_inflight: int | None = None
    budget: BudgetLimits = dataclasses.field(default_factory=BudgetLimits)
    use_case_catalogs: Mapping[str, Catalog] = dataclasses.field(default_factory=dict)
    use_case_strategies: Mapping[str, frozenset[Strategy] | None] = dataclasses.field(
        default_factory=dict
    )

    def catalog_for(self, use_case: str) -> Catalog:
        """The models this tenant may use for ``use_case`` (its plan may narrow them)."""
        return self.use_case_catalogs.get(use_case, self.catalog)

    def strategies_for(self, use_case: str) -> frozenset[Strategy] | None:
        """Strategies allowed for ``use_case``; None means every one."""
        return self.use_case_strategies.get(use_case, self.strategies)

    def allows_strategy(self, strategy: Strategy, use_case: str = "") -> bool:
        allowed = self.strategies_for(use_case)
        return allowed is None or strategy is Strategy.AUTO or strategy in allowed

    def fallback_strategy(self, use_case: str = "") -> Strategy:
        """What to run when the planner picks a strategy this tenant may not use."""
        for strategy in (Strategy.CASCADE, Strategy.SINGLE):
            if self.allows_strategy(strategy, use_case):
                return strategy
        return Strategy.SINGLE


def filter_catalog(catalog: Catalog, keep: Iterable[str]) -> Catalog:
    """The catalog restricted to the models named in ``keep``.

    Tiers, the baseline and the difficulty map stay as they are, so tier ranks and the
    saving against the premium baseline mean the same for every tenant.
    """
    names = set(keep)
    models = {n: m for n, m in catalog.models.items() if n in names}
    by_tier = {
        tier: tuple(m for m in specs if m.name in names) for tier, specs in catalog.by_tier.items()
    }
    return dataclasses.replace(catalog, models=models, by_tier=by_tier)


def cheapest_tier(catalog: Catalog) -> str:
    """The cheapest tier that has a model in ``catalog``."""
    for tier in catalog.tiers:
        if catalog.by_tier.get(tier):
            return tier
    return catalog.tiers[0]


def _strategies(values: Iterable[str] | None) -> frozenset[Strategy] | None:
    return None if values is None else frozenset(Strategy(v) for v in values)


def _intersect(
    *sets: frozenset[Strategy] | None,
) -> frozenset[Strategy] | None:
    result: frozenset[Strategy] | None = None
    for s in sets:
        if s is not None:
            result = s if result is None else result & s
    return result


def _allowed_models(
    catalog: Catalog, models: list[str] | None, tiers: list[str] | None, rules: list[PlanRule]
) -> list[ModelSpec]:
    ranks = [catalog.tier_rank(r.max_tier) for r in rules if r.max_tier is not None]
    top = min(ranks, default=len(catalog.tiers) - 1)
    return [
        m
        for m in catalog.ordered()
        if (models is None or m.name in models)
        and (tiers is None or m.tier in tiers)
        and m.tier_rank <= top
    ]


def compile_tenants(config: Config, catalog: Catalog) -> dict[str, TenantPolicy]:
    """Every configured tenant's policy; :class:`ConfigError` for one left with no model."""
    plans = {**builtin_plans(config), **config.plans}
    policies: dict[str, TenantPolicy] = {}
    problems: list[str] = []
    for name, t in config.tenants.items():
        plan = plans[t.plan]
        allowed = _allowed_models(catalog, t.models, t.tiers, [plan])
        if not allowed:
            problems.append(
                f"tenants.{name}: no model is left once plan {t.plan!r} and the tenant's "
                "models/tiers lists are applied"
            )
            continue
        base_strategies = _intersect(_strategies(plan.strategies), _strategies(t.strategies))
        use_case_catalogs: dict[str, Catalog] = {}
        use_case_strategies: dict[str, frozenset[Strategy] | None] = {}
        for use_case, rule in plan.use_cases.items():
            narrowed = _allowed_models(catalog, t.models, t.tiers, [plan, rule])
            use_case_catalogs[use_case] = filter_catalog(catalog, (m.name for m in narrowed))
            use_case_strategies[use_case] = _intersect(
                base_strategies, _strategies(rule.strategies)
            )
        policies[name] = TenantPolicy(
            name=name,
            plan=t.plan,
            catalog=filter_catalog(catalog, (m.name for m in allowed)),
            strategies=base_strategies,
            agents=frozenset(t.agents) if t.agents is not None else None,
            tools=frozenset(t.tools) if t.tools is not None else None,
            use_cases=frozenset(t.use_cases) if t.use_cases is not None else None,
            default_sensitivity=_SENSITIVITY[t.default_sensitivity]
            if t.default_sensitivity
            else None,
            max_inflight=t.max_inflight,
            budget=t.budget,
            use_case_catalogs=use_case_catalogs,
            use_case_strategies=use_case_strategies,
        )
    if problems:
        raise ConfigError(problems)
    return policies


def check_request(tenant: TenantPolicy, request: RouteRequest) -> None:
    """Raise :class:`PermissionDenied` naming everything ``request`` asks for that
    ``tenant`` may not use (hints and tool definitions)."""
    hints = request.hints
    denied: list[str] = []
    if tenant.use_cases is not None and hints.use_case and hints.use_case not in tenant.use_cases:
        denied.append(f"use case {hints.use_case}")
    catalog = tenant.catalog_for(hints.use_case)
    if hints.model and hints.model not in catalog.models:
        denied.append(f"model {hints.model}")
    if hints.tier and not catalog.by_tier.get(hints.tier):
        denied.append(f"tier {hints.tier}")
    if not tenant.allows_strategy(hints.strategy, hints.use_case):
        denied.append(f"strategy {hints.strategy.value}")
    if tenant.agents is not None and hints.agent and hints.agent not in tenant.agents:
        denied.append(f"agent {hints.agent}")
    if tenant.tools is not None:
        denied.extend(f"tool {t.name}" for t in request.params.tools if t.name not in tenant.tools)
    if denied:
        plan = f" (plan {tenant.plan})" if tenant.plan else ""
        raise PermissionDenied(
            f"tenant {tenant.name}{plan} may not use: {', '.join(denied)}",
            metadata={"tenant": tenant.name, "denied": "; ".join(denied)},
        )


def with_tenant_defaults(tenant: TenantPolicy, request: RouteRequest) -> RouteRequest:
    """``request`` with the tenant's defaults filled in (data sensitivity) and its name set."""
    hints = request.hints
    if hints.sensitivity is None and tenant.default_sensitivity is not None:
        hints = dataclasses.replace(hints, sensitivity=tenant.default_sensitivity)
    if hints is request.hints and request.tenant == tenant.name:
        return request
    return request.with_hints(hints, tenant=tenant.name)


def authenticates(config: Config) -> bool:
    """Whether callers authenticate (and so each request belongs to a known tenant)."""
    return (config.auth.mode or ("tokens" if config.tenants else "disabled")) == "tokens"


class Tenants:
    """The tenant registry: authentication and per-request resolution."""

    def __init__(
        self, config: Config, catalog: Catalog, environ: Mapping[str, str] | None = None
    ) -> None:
        self.policies = compile_tenants(config, catalog)
        self.auth_required = authenticates(config)
        self.anonymous = TenantPolicy(
            name=ANONYMOUS, plan="", catalog=catalog, strategies=None, budget=BudgetLimits()
        )
        self._verifier: TokenVerifier | None = None
        if self.auth_required:
            self._verifier = TokenVerifier(
                token_digests(config, environ), hash_key(config, environ)
            )
        elif config.tenants:
            log.warning(
                "auth_disabled",
                reason="auth.mode is disabled: any caller may act as any tenant",
                tenants=len(config.tenants),
            )
        elif any(p.kind != "simulated" for p in config.providers.values()):
            # Real provider keys, spent by anyone who can reach the port.
            log.warning(
                "auth_off",
                reason="no tenants configured: every caller is _anonymous and spends "
                "the provider keys; configure tenants (auth) or a budget for production",
            )
        else:
            log.info("auth_off", reason="no tenants configured: every caller is _anonymous")

    def authenticate(self, *authorization: str | bytes) -> TenantPolicy | None:
        """The tenant a request's credentials (its ``authorization`` values) prove, None
        when authentication is off. More than one value is refused: which of two
        tokens a request runs as must not depend on the order a proxy sent them in."""
        if self._verifier is None:
            return None
        if len(authorization) > 1:
            raise Unauthenticated(f"{len(authorization)} authorization values: send exactly one")
        return self.policies[self._verifier.verify(authorization[0] if authorization else None)]

    def for_request(self, authenticated: TenantPolicy | None, requested: str) -> TenantPolicy:
        """The tenant a request runs as.

        With authentication on, that is the authenticated tenant, and ``requested``
        (``RouteRequest.tenant``) must be empty or name it. With it off, ``requested``
        picks a configured tenant, and an empty one means the anonymous tenant.
        """
        if self.auth_required:
            if authenticated is None:
                raise Unauthenticated("no authenticated tenant for this request")
            if requested and requested != authenticated.name:
                # The value is not echoed: callers have been known to paste a token there.
                raise PermissionDenied(
                    "request.tenant is not the authenticated tenant",
                    metadata={"tenant": authenticated.name},
                )
            return authenticated
        if authenticated is not None:
            return authenticated
        if not requested or not self.policies:
            return self.anonymous
        policy = self.policies.get(requested)
        if policy is None:
            raise PermissionDenied("request.tenant names no configured tenant")
        return policy
