"""Cross-references the section models cannot check alone: a model's provider exists,
its tier is listed, a tenant's plan exists, ... Each problem names its key path."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from quorum.server.config.models import ModelConfig
from quorum.server.config.operations import PlanRule, TenantConfig, builtin_plans
from quorum.server.config.providers import ProviderConfig
from quorum.server.config.root import Config


def _cross_reference_access(config: Config) -> list[str]:
    """Cross-references of tenants, plans, auth and TLS."""
    problems: list[str] = []
    tiers = set(config.tiers)
    use_cases = set(config.routing.use_cases)
    auth = config.auth
    mode = auth.mode or ("tokens" if config.tenants else "disabled")
    if auth.mode == "tokens" and not config.tenants:
        problems.append("auth.mode: tokens needs at least one tenant under tenants")
    if auth.token_hash == "hmac_sha256" and auth.hash_key_env is None:
        problems.append("auth.hash_key_env: required when auth.token_hash is hmac_sha256")
    for name, plan in config.plans.items():
        rules: list[tuple[str, PlanRule]] = [(f"plans.{name}", plan)]
        rules += [(f"plans.{name}.use_cases.{u}", r) for u, r in plan.use_cases.items()]
        for u in plan.use_cases:
            if u not in use_cases:
                problems.append(
                    f'plans.{name}.use_cases.{u}: unknown use case "{u}" {_suggest(u, use_cases)}'
                )
        for path, rule in rules:
            if rule.max_tier is not None and rule.max_tier not in tiers:
                problems.append(
                    f'{path}.max_tier: unknown tier "{rule.max_tier}" '
                    f"{_suggest(rule.max_tier, tiers)}"
                )
    plans = {**builtin_plans(config.tiers), **config.plans}
    seen: dict[str, str] = {}
    for name, tenant in config.tenants.items():
        path = f"tenants.{name}"
        if mode == "tokens" and not tenant.digests() and tenant.token_sha256_env is None:
            problems.append(f"{path}: set token_sha256 or token_sha256_env")
        for digest in tenant.digests():
            if digest in seen:
                problems.append(f"{path}.token_sha256: same token as tenants.{seen[digest]}")
            seen[digest] = name
        if tenant.plan not in plans:
            problems.append(
                f'{path}.plan: unknown plan "{tenant.plan}" {_suggest(tenant.plan, plans)}'
            )
        for key, known in (
            ("models", set(config.models)),
            ("tiers", tiers),
            ("use_cases", use_cases),
            ("agents", set(config.agents)),
        ):
            for value in getattr(tenant, key) or ():
                if value not in known:
                    problems.append(
                        f'{path}.{key}: unknown {key[:-1].replace("_", " ")} "{value}" '
                        f"{_suggest(value, known)}"
                    )
        tenant_plan = plans.get(tenant.plan)
        if tenant_plan is not None and not _tenant_has_a_model(config, tenant, tenant_plan):
            # What serve's tenants.compile_tenants refuses: said here so check-config does.
            problems.append(
                f"{path}: no model is left once plan {tenant.plan!r} and the tenant's "
                "models/tiers lists are applied"
            )
    tls = config.server.tls
    if tls is not None and tls.require_client_auth and not tls.client_ca_file:
        problems.append("server.tls.client_ca_file: required when require_client_auth is true")
    return problems


def _tenant_has_a_model(config: Config, tenant: TenantConfig, plan: PlanRule) -> bool:
    """Whether some model is in the tenant's ``models`` and ``tiers`` lists (each unset
    means any) and no higher than its plan's ``max_tier``. An unknown max_tier is reported
    on its own and does not narrow."""
    top = len(config.tiers) - 1
    if plan.max_tier is not None and plan.max_tier in config.tiers:
        top = config.tiers.index(plan.max_tier)
    return any(
        (tenant.models is None or name in tenant.models)
        and (tenant.tiers is None or model.tier in tenant.tiers)
        and model.tier in config.tiers[: top + 1]
        for name, model in config.models.items()
    )


def _header_problems(path: str, provider: ProviderConfig) -> list[str]:
    """A header named twice, in different case: both would be sent (names are
    case-insensitive, so the upstream sees one header with two values)."""
    problems: list[str] = []
    first: dict[str, str] = {}
    for name in provider.headers:
        earlier = first.setdefault(name.lower(), name)
        if earlier != name:
            problems.append(
                f'{path}.headers.{name}: the same header as "{earlier}" '
                "(header names are case-insensitive); keep one"
            )
    return problems


def _suggest(value: str, known: Iterable[str]) -> str:
    names = sorted(known)
    close = difflib.get_close_matches(value, names, n=1)
    hint = f'; did you mean "{close[0]}"?' if close else ""
    return f"(known: {', '.join(names) or 'none'}){hint}"


def _model_providers(config: Config, path: str, model: ModelConfig) -> list[str]:
    """A model names one provider, or lists deployments; every provider must exist."""
    problems: list[str] = []
    if model.provider and model.deployments:
        return [f"{path}.deployments: set provider or deployments, not both"]
    if not model.provider and not model.deployments:
        return [f"{path}.provider: required key is missing (or list deployments)"]
    routes = (
        [(f"{path}.provider", model.provider)]
        if model.provider
        else [
            (f"{path}.deployments[{i}].provider", d.provider)
            for i, d in enumerate(model.deployments)
        ]
    )
    simulated = False
    for key, provider_name in routes:
        provider = config.providers.get(provider_name)
        if provider is None:
            problems.append(
                f'{key}: unknown provider "{provider_name}" '
                f"{_suggest(provider_name, config.providers)}"
            )
        elif provider.kind == "simulated":
            simulated = True
    if model.simulated is not None and not simulated and not problems:
        problems.append(f"{path}.simulated: only for models of a simulated provider")
    seen: set[tuple[str, str]] = set()
    for i, d in enumerate(model.deployments):
        route = (d.provider, d.model_id or model.model_id)
        if route in seen:
            problems.append(f"{path}.deployments[{i}]: duplicate of an earlier deployment")
        seen.add(route)
    return problems


def _cross_reference_strategies(config: Config) -> list[str]:
    """``routing.cascade``, ``routing.consensus`` and ``routing.performance`` against the
    tiers, the models and their own windows."""
    problems: list[str] = []
    routing = config.routing
    cascade, consensus = routing.cascade, routing.consensus
    order = {tier: i for i, tier in enumerate(config.tiers)}
    ranks: list[int] = []
    for i, tier in enumerate(cascade.tiers):
        if tier not in order:
            problems.append(
                f'routing.cascade.tiers[{i}]: unknown tier "{tier}" {_suggest(tier, order)}'
            )
        else:
            ranks.append(order[tier])
    if ranks != sorted(set(ranks)):
        problems.append("routing.cascade.tiers: list each tier once, cheapest first")
    if cascade.min_samples > cascade.window:
        problems.append(
            f"routing.cascade.min_samples: {cascade.min_samples} exceeds window {cascade.window}"
        )
    performance = routing.performance
    if performance.min_samples > performance.window:
        # The window never holds enough outcomes: performance routing would never get a rate.
        problems.append(
            f"routing.performance.min_samples: {performance.min_samples} exceeds window "
            f"{performance.window}"
        )
    for i, model in enumerate(consensus.models):
        if model not in config.models:
            problems.append(
                f'routing.consensus.models[{i}]: unknown model "{model}" '
                f"{_suggest(model, config.models)}"
            )
    if consensus.judge_model and consensus.judge_model not in config.models:
        problems.append(
            f'routing.consensus.judge_model: unknown model "{consensus.judge_model}" '
            f"{_suggest(consensus.judge_model, config.models)}"
        )
    if consensus.size > consensus.max_size:
        problems.append(
            f"routing.consensus.size: {consensus.size} exceeds max_size {consensus.max_size}"
        )
    if consensus.size > routing.max_upstream_calls:
        problems.append(
            f"routing.consensus.size: {consensus.size} exceeds routing.max_upstream_calls "
            f"{routing.max_upstream_calls}"
        )
    if consensus.accuracy_min_samples > consensus.accuracy_window:
        problems.append(
            f"routing.consensus.accuracy_min_samples: {consensus.accuracy_min_samples} "
            f"exceeds accuracy_window {consensus.accuracy_window}"
        )
    return problems


def _remote_embedding_problems(config: Config) -> list[str]:
    """``classifier.embedding.remote.provider`` names a provider of kind openai (the one
    wire format with an embeddings endpoint)."""
    remote = config.classifier.embedding.remote
    if remote is None:
        return []
    path = "classifier.embedding.remote.provider"
    provider = config.providers.get(remote.provider)
    if provider is None:
        return [
            f'{path}: unknown provider "{remote.provider}" '
            f"{_suggest(remote.provider, config.providers)}"
        ]
    if provider.kind != "openai":
        openai = {n for n, p in config.providers.items() if p.kind == "openai"}
        return [
            f'{path}: provider "{remote.provider}" is of kind {provider.kind!r}; remote '
            f"embeddings need an OpenAI-compatible provider (kind 'openai': "
            f"{', '.join(sorted(openai)) or 'none configured'})"
        ]
    return []


def _cross_reference(config: Config) -> list[str]:
    problems: list[str] = []
    tiers = set(config.tiers)
    if len(tiers) != len(config.tiers):
        problems.append("tiers: names must be unique")
    if not config.models:
        problems.append("models: at least one model is required")
    for name, provider in config.providers.items():
        path = f"providers.{name}"
        if provider.kind != "simulated" and not provider.base_url:
            problems.append(f"{path}.base_url: required for kind {provider.kind!r}")
        problems.extend(_header_problems(path, provider))
    for name, model in config.models.items():
        path = f"models.{name}"
        problems.extend(_model_providers(config, path, model))
        if model.tier not in tiers:
            problems.append(
                f'{path}.tier: unknown tier "{model.tier}" {_suggest(model.tier, tiers)}'
            )
    for tier in config.tiers:
        if not any(m.tier == tier for m in config.models.values()):
            problems.append(f'tiers: tier "{tier}" has no model')
    for name, agent in config.agents.items():
        for tier, model_name in agent.models.items():
            path = f"agents.{name}.models.{tier}"
            if tier not in tiers:
                problems.append(f'{path}: unknown tier "{tier}" {_suggest(tier, tiers)}')
            elif model_name not in config.models:
                problems.append(
                    f'{path}: unknown model "{model_name}" {_suggest(model_name, config.models)}'
                )
            elif config.models[model_name].tier != tier:
                problems.append(
                    f'{path}: model "{model_name}" is in tier "{config.models[model_name].tier}"'
                )
    llm = config.classifier.llm
    if llm is not None and llm.model not in config.models:
        problems.append(
            f'classifier.llm.model: unknown model "{llm.model}" '
            f"{_suggest(llm.model, config.models)}"
        )
    problems.extend(_remote_embedding_problems(config))
    decisions = config.decisions
    if decisions.sink == "file" and not decisions.path:
        problems.append("decisions.path: required when decisions.sink is file")
    if decisions.sink == "redis" and not config.state.redis_url:
        problems.append("decisions.sink: redis needs state.redis_url")
    routing = config.routing
    if routing.baseline_model and routing.baseline_model not in config.models:
        problems.append(
            f'routing.baseline_model: unknown model "{routing.baseline_model}" '
            f"{_suggest(routing.baseline_model, config.models)}"
        )
    for level, tier in routing.difficulty_tiers.items():
        if tier not in tiers:
            problems.append(
                f'routing.difficulty_tiers.{level}: unknown tier "{tier}" {_suggest(tier, tiers)}'
            )
    for name, policy in routing.use_cases.items():
        if policy.tier and policy.tier not in tiers:
            problems.append(
                f'routing.use_cases.{name}.tier: unknown tier "{policy.tier}" '
                f"{_suggest(policy.tier, tiers)}"
            )
    problems.extend(_cross_reference_strategies(config))
    return problems


def cross_reference_problems(config: Config) -> list[str]:
    """Every cross-reference problem of ``config``, each naming its key path."""
    return _cross_reference(config) + _cross_reference_access(config)
