"""Configuration: one YAML file, validated at start-up.

Loading happens in two steps. First the raw shape is parsed by pydantic models that
reject unknown keys and bad types. Then cross-references are checked (a model's
provider exists, its tier is listed, the baseline model exists, ...). Every problem
is reported with its key path, e.g. ``models.fast.provider: unknown provider "opena"
(known: openai, sim)``, and all problems are reported at once.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from quorum.server.errors import ConfigError

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$")]
CapabilityName = Literal["tools", "vision", "json_mode", "json_schema", "streaming", "logprobs"]
SensitivityName = Literal["public", "internal", "restricted"]
DifficultyName = Literal["low", "medium", "high"]
StrategyName = Literal["auto", "single", "cascade", "consensus_majority", "consensus_judge"]
PriorityName = Literal["latency", "balanced", "quality", "cost"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsConfig(_Strict):
    """TLS on the gRPC port; mutual TLS when clients must present a certificate."""

    cert_file: str = Field(min_length=1)
    key_file: str = Field(min_length=1)
    client_ca_file: str | None = None
    require_client_auth: bool = False


class ServerConfig(_Strict):
    """The gRPC listener and its limits."""

    address: str = "[::]:50051"
    http_address: str | None = Field(
        None,
        pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*):[0-9]{1,5}$",
        description="HOST:PORT of the OpenAI-compatible HTTP front door; off when unset",
    )
    grace_period_s: float = Field(20.0, ge=0, le=600)
    max_connection_age_s: float = Field(300.0, gt=0)
    max_connection_age_grace_s: float = Field(30.0, ge=0)
    max_request_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_messages: int = Field(256, ge=1, le=10_000)
    max_concurrent_rpcs: int = Field(1024, ge=1)
    default_deadline_s: float = Field(60.0, gt=0, le=3600)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_prompts: bool = False
    tls: TlsConfig | None = None


class BreakerConfig(_Strict):
    """Circuit breaker of one provider."""

    fail_max: int = Field(5, ge=1, le=1000)
    reset_timeout_s: float = Field(30.0, gt=0, le=3600)
    scope: Literal["provider", "model"] = Field(
        "provider",
        description="one breaker for the provider, or one per model deployment on it",
    )


class RetryConfig(_Strict):
    """Retries of one provider's failed calls, and how long a 429 may be waited out.

    A retry is taken only for a transient fault (5xx, connection error, malformed
    body), within the caller's deadline and the upstream-call cap, after a jittered
    exponential backoff, and only while the retry budget allows: each first call
    earns ``budget_ratio`` of a retry (plus ``budget_min_per_s`` over time), so a
    struggling provider sees at most that share of extra load.
    """

    max_retries: int = Field(0, ge=0, le=10)
    backoff_base_s: float = Field(0.05, ge=0, le=60)
    backoff_max_s: float = Field(2.0, ge=0, le=600)
    budget_ratio: float = Field(0.2, ge=0, le=10)
    budget_min_per_s: float = Field(1.0, ge=0, le=1000)
    max_rate_limit_wait_s: float = Field(
        0.5, ge=0, le=60, description="wait out a Retry-After this short instead of failing over"
    )


class LimitsConfig(_Strict):
    """Client-side limits of one provider; beyond them requests queue, then fail over."""

    max_concurrency: int | None = Field(None, ge=1, le=100_000)
    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    max_queue: int = Field(64, ge=0, le=100_000)
    max_queue_wait_s: float = Field(1.0, ge=0, le=600)


class ProviderConfig(_Strict):
    """An upstream LLM API."""

    kind: Literal["openai", "anthropic", "gemini", "simulated"]
    base_url: str = ""
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    timeout_s: float = Field(60.0, gt=0, le=3600)
    connect_timeout_s: float = Field(5.0, gt=0, le=600)
    max_connections: int = Field(100, ge=1, le=10_000)
    headers: dict[str, str] = Field(default_factory=dict)
    breaker: BreakerConfig = BreakerConfig()
    retry: RetryConfig = RetryConfig()
    limits: LimitsConfig = LimitsConfig()

    @field_validator("base_url")
    @classmethod
    def _url_scheme(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


def _default_skill() -> dict[DifficultyName, float]:
    return {"low": 0.97, "medium": 0.85, "high": 0.6}


def _default_capabilities() -> list[CapabilityName]:
    return ["streaming"]


class SimulatedBehaviour(_Strict):
    """How a simulated model behaves: latency, failures and answer quality."""

    latency_ms_p50: float = Field(300.0, ge=0)
    latency_ms_p95: float = Field(800.0, ge=0)
    ms_per_output_token: float = Field(0.0, ge=0)
    failure_rate: float = Field(0.0, ge=0, le=1)
    skill: dict[DifficultyName, float] = Field(default_factory=_default_skill)
    refusal_share: float = Field(
        0.6, ge=0, le=1, description="share of wrong answers that are refusals/hedges"
    )
    output_tokens: int = Field(120, ge=1, le=100_000)

    @field_validator("skill")
    @classmethod
    def _probabilities(cls, value: dict[str, float]) -> dict[str, float]:
        for level, p in value.items():
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"skill.{level} must be within [0, 1], got {p}")
        return value


class DeploymentConfig(_Strict):
    """One way to reach a model: a provider and its id for the model there."""

    provider: Name
    model_id: str = ""
    weight: float = Field(1.0, gt=0, le=1000)


class HedgeConfig(_Strict):
    """Hedged requests: a second call to the next candidate when the first is slow."""

    delay_ms: float | None = Field(
        None, gt=0, le=600_000, description="fixed delay; default the observed p95 latency"
    )
    min_delay_ms: float = Field(20.0, ge=0, le=600_000)
    initial_delay_ms: float = Field(
        1000.0, gt=0, le=600_000, description="delay until min_samples latencies are observed"
    )
    min_samples: int = Field(20, ge=1, le=10_000)


class ModelConfig(_Strict):
    """A model Quorum may route to."""

    provider: Name = Field("", description="required unless deployments are listed")
    model_id: str = ""
    tier: Name
    input_usd_per_mtok: float = Field(ge=0, le=10_000)
    output_usd_per_mtok: float = Field(ge=0, le=10_000)
    context_window: int = Field(128_000, ge=256)
    max_output_tokens: int = Field(4096, ge=1)
    capabilities: list[CapabilityName] = Field(default_factory=_default_capabilities)
    max_sensitivity: SensitivityName = "internal"
    weight: float = Field(1.0, gt=0, le=100)
    quality_prior: float | None = Field(
        None, ge=0, le=1, description="expected answer quality before any is observed"
    )
    simulated: SimulatedBehaviour | None = None
    deployments: list[DeploymentConfig] = Field(
        default_factory=list, description="several ways to reach the model, load-balanced"
    )
    balance: Literal["weighted", "least_outstanding", "lowest_latency"] = "weighted"
    hedge: HedgeConfig | None = None
    stream_failover: Literal["restart", "error"] = Field(
        "restart",
        description="when a stream breaks after its first chunk: restart on the next "
        "candidate (with a fallback event) or end with an error event",
    )


class UseCasePolicy(_Strict):
    """A named policy a request selects with ``hints.use_case``."""

    priority: PriorityName | None = None
    tier: Name | None = None
    strategy: StrategyName | None = None


NormalizerName = Literal["auto", "exact", "text", "numeric", "choice", "json", "labels"]


class GateConfig(_Strict):
    """The cascade's quality gate: fast checks only, never another model call."""

    min_chars: int = Field(1, ge=0, le=100_000)
    refusal_phrases: list[str] | None = Field(
        None, description="replaces the built-in multilingual list when set"
    )
    extra_refusal_phrases: list[str] = Field(default_factory=list)
    refusal_scan_chars: int = Field(240, ge=10, le=100_000)
    min_mean_logprob: float | None = Field(-0.7, le=0)
    request_logprobs: bool = Field(
        True, description="ask models with the logprobs capability for log-probabilities"
    )
    max_repeated_share: float = Field(0.3, gt=0, le=1)


class CascadeConfig(_Strict):
    """Cheapest tier first; escalate when the gate fails; skip tiers that keep failing."""

    auto: bool = Field(True, description="the planner may choose cascade for medium requests")
    tiers: list[Name] = Field(default_factory=list, description="empty: every tier")
    models_per_tier: int = Field(2, ge=1, le=10)
    escalation_threshold: float = Field(0.40, ge=0, le=1)
    window: int = Field(50, ge=1, le=100_000)
    min_samples: int = Field(20, ge=1, le=100_000)
    probe_share: float = Field(0.05, ge=0, le=1)
    gate: GateConfig = GateConfig()


class ConsensusConfig(_Strict):
    """Several models in parallel, reconciled by weighted majority or a judge."""

    auto: bool = Field(True, description="the planner may choose consensus for hard requests")
    auto_mode: Literal["majority", "judge"] = "majority"
    size: int = Field(3, ge=2, le=16)
    max_size: int = Field(5, ge=2, le=16)
    models: list[Name] = Field(default_factory=list, description="preferred voters, in order")
    normalizer: NormalizerName = "auto"
    weighting: Literal["static", "observed"] = "static"
    accuracy_window: int = Field(200, ge=1, le=100_000)
    accuracy_min_samples: int = Field(20, ge=1, le=100_000)
    early_exit: bool = True
    tie_break: Literal["most_capable", "judge"] = "most_capable"
    judge_model: Name | None = None
    judge_timeout_s: float = Field(20.0, gt=0, le=600)
    synthesize: bool = False
    exclude_judge_provider: bool = False
    budget_pressure_above: float = Field(
        0.8, ge=0, le=1, description="share of budget spent above which auto never fans out"
    )


class PerformanceConfig(_Strict):
    """Performance-based routing: order a tier's models by observed quality per task."""

    enabled: bool = True
    explore_share: float = Field(
        0.0, ge=0, le=1, description="share of requests that Thompson-sample the order (opt-in)"
    )
    window: int = Field(200, ge=1, le=100_000)
    min_samples: int = Field(20, ge=1, le=100_000)


class RoutingConfig(_Strict):
    """How the planner chooses."""

    baseline_model: Name | None = None
    default_strategy: StrategyName = "auto"
    difficulty_tiers: dict[DifficultyName, Name] = Field(default_factory=dict)
    max_failover_attempts: int = Field(3, ge=1, le=20)
    performance: PerformanceConfig = PerformanceConfig()
    max_upstream_calls: int = Field(8, ge=1, le=64)
    use_cases: dict[Name, UseCasePolicy] = Field(default_factory=dict)
    cascade: CascadeConfig = CascadeConfig()
    consensus: ConsensusConfig = ConsensusConfig()


class StateConfig(_Strict):
    """Where state shared across replicas lives."""

    redis_url: str | None = None
    namespace: Name = "quorum"
    refresh_interval_s: float = Field(0.25, gt=0, le=60)
    redis_timeout_s: float = Field(0.25, gt=0, le=30)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value


class AgentConfig(_Strict):
    """A named task domain: examples to recognise it, its prompt, tools and models."""

    description: str = ""
    examples: list[Annotated[str, Field(min_length=1, max_length=2000)]] = Field(
        default_factory=list
    )
    system_prompt: str = ""
    tools: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]] | None = None
    models: dict[Name, Name] = Field(default_factory=dict, description="tier -> model")


class EmbeddingClassifierConfig(_Strict):
    """Semantic routes over example utterances (all-MiniLM-L6-v2, local)."""

    enabled: bool = True
    threshold: float = Field(0.45, ge=0, le=1)
    k: int = Field(5, ge=1, le=50)
    tasks: dict[Name, list[Annotated[str, Field(min_length=1)]]] = Field(default_factory=dict)


class LLMClassifierConfig(_Strict):
    """A cheap model asked for {task, difficulty, confidence} as strict JSON."""

    model: Name
    timeout_ms: float = Field(300.0, gt=0, le=10_000)


class LearnedRouterConfig(_Strict):
    """The learned router trained on real routing data (``quorum router train``)."""

    artifact: str = Field("default", description='"default" or an artifact directory')
    source: str | None = Field(None, description="which trained head; default: the artifact's")
    difficulty: bool = Field(True, description="let it decide the difficulty")
    verifier: bool = Field(False, description="add its verifier to the cascade's gate")


class ClassifierConfig(_Strict):
    """How requests are classified: rules, then embeddings, then an LLM when unsure."""

    confident_at: float = Field(0.7, ge=0, le=1)
    embedding: EmbeddingClassifierConfig = EmbeddingClassifierConfig()
    llm: LLMClassifierConfig | None = None
    learned: LearnedRouterConfig | None = None


class ShadowConfig(_Strict):
    """Shadow evaluation: re-ask a cheaper tier for a sample of traffic, off the hot path."""

    sample_rate: float = Field(0.0, ge=0, le=1)
    daily_budget_usd: float = Field(1.0, ge=0)
    timeout_s: float = Field(30.0, gt=0, le=600)


class DecisionLogConfig(_Strict):
    """Where every routing decision (and later feedback) is written, as JSON lines."""

    sink: Literal["none", "stdout", "file", "redis"] = "stdout"
    path: str | None = None
    include_prompts: bool = False
    retention_s: float = Field(86_400.0, gt=0, le=30 * 86_400)
    max_entries: int = Field(50_000, ge=100, le=10_000_000)
    # Queued lines are written in one batch at most this often (0: as soon as possible).
    flush_interval_s: float = Field(0.05, ge=0, le=10)


# ---- tenants, auth, budgets, cache, admission, observability -----------------------

EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
HostPort = Annotated[str, Field(pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*):[0-9]{1,5}$")]


class AuthConfig(_Strict):
    """How callers prove which tenant they are: ``authorization: Bearer <token>``.

    Tokens are never stored: each tenant lists the hex digest of its token, SHA-256 or
    (better, with ``token_hash: hmac_sha256``) HMAC-SHA256 under a server key read from
    ``hash_key_env``. ``mode`` defaults to ``tokens`` whenever tenants are configured;
    ``disabled`` must be written out and is meant for local use.
    """

    mode: Literal["tokens", "disabled"] | None = None
    token_hash: Literal["sha256", "hmac_sha256"] = "sha256"
    hash_key_env: EnvName | None = None


class BudgetLimits(_Strict):
    """Spend limits of one scope (a tenant, or every tenant together), in USD."""

    daily_usd: float | None = Field(None, ge=0)
    monthly_usd: float | None = Field(None, ge=0)
    overdraft_usd: float = Field(
        0.0, ge=0, description="how far past a limit a critical request may still go"
    )
    soft_limit_ratio: float | None = Field(
        None, gt=0, le=1, description="override of budgets.soft_limit_ratio for this scope"
    )


class BudgetsConfig(_Strict):
    """Budgets: reserve a plan's maximum cost before calling, settle to the actual after."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    all_tenants: BudgetLimits = Field(default_factory=BudgetLimits, alias="global")
    soft_limit_ratio: float = Field(
        0.85, gt=0, le=1, description="above it non-critical requests go to the cheapest tier"
    )
    store_failure: Literal["deny", "allow"] = Field(
        "deny", description="when the shared budget store cannot be reached"
    )
    max_reservation_s: float = Field(
        900.0, gt=0, le=86_400, description="a reservation never settled is released after this"
    )


class PlanRule(_Strict):
    """What a plan allows, for all requests or for one use case."""

    max_tier: Name | None = None
    strategies: list[StrategyName] | None = None


class PlanConfig(PlanRule):
    """A commercial plan (free, pro, enterprise, ...) that policies key on."""

    use_cases: dict[Name, PlanRule] = Field(default_factory=dict)


class TenantConfig(_Strict):
    """A caller of the service, with its token, plan, allow-lists, limits and budget."""

    token_sha256: str | list[str] | None = None
    token_sha256_env: EnvName | None = None
    plan: Name = "pro"
    models: list[Name] | None = None
    tiers: list[Name] | None = None
    strategies: list[StrategyName] | None = None
    agents: list[Name] | None = None
    tools: list[str] | None = None
    use_cases: list[Name] | None = None
    default_sensitivity: SensitivityName | None = None
    max_inflight: int | None = Field(None, ge=1, le=1_000_000)
    budget: BudgetLimits = BudgetLimits()

    @field_validator("token_sha256")
    @classmethod
    def _hex_digests(cls, value: str | list[str] | None) -> str | list[str] | None:
        for digest in [value] if isinstance(value, str) else value or []:
            if not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise ValueError(
                    "must be the 64-character lowercase hex SHA-256 (or HMAC-SHA256) digest "
                    "of the token, or a list of them; never the token itself"
                )
        return value

    def digests(self) -> list[str]:
        """The token digests written in the config (not those from the environment)."""
        if self.token_sha256 is None:
            return []
        return [self.token_sha256] if isinstance(self.token_sha256, str) else self.token_sha256


class AdmissionConfig(_Strict):
    """Load shedding: requests beyond these get RESOURCE_EXHAUSTED with a retry delay."""

    max_inflight: int | None = Field(
        None, ge=1, le=1_000_000, description="default: server.max_concurrent_rpcs"
    )
    max_inflight_per_tenant: int | None = Field(None, ge=1, le=1_000_000)
    retry_after_s: float = Field(1.0, gt=0, le=3600)
    # Refuse a share of new Route/RouteStream calls while calls wait at least this long
    # in gRPC core before the server takes them (quorum.server.shedding); null: never.
    # 250 ms: a standing queue, not the tens of milliseconds a busy closed loop of
    # callers sees on a small machine.
    max_queue_delay_ms: float | None = Field(250.0, gt=0, le=60_000)


class CacheConfig(_Strict):
    """Exact-match cache of final answers, per tenant; opt-in per request or by default."""

    enabled: bool = False
    default_allow: bool = False
    ttl_s: float = Field(300.0, gt=0, le=30 * 86_400)
    max_entries: int = Field(10_000, ge=1, le=10_000_000)
    max_entry_bytes: int = Field(256 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_memory_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="in-process store only: total size bound"
    )
    cache_tool_calls: bool = False
    cache_nonzero_temperature: bool = False
    cache_streams: bool = False
    max_sensitivity: SensitivityName = Field(
        "internal", description="requests above this level are never cached"
    )


class TracingConfig(_Strict):
    """OpenTelemetry tracing, exported with OTLP over gRPC."""

    otlp_endpoint: str = Field(min_length=1)
    sample_ratio: float = Field(0.1, ge=0, le=1)
    insecure: bool | None = Field(None, description="default: true for an http:// endpoint")
    service_name: str = Field("quorum", min_length=1)

    @field_validator("otlp_endpoint")
    @classmethod
    def _otlp_scheme(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


class ObservabilityConfig(_Strict):
    """Prometheus metrics and tracing."""

    metrics_address: HostPort | None = None
    tracing: TracingConfig | None = None


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
    plans = {"free", "pro", "enterprise", *config.plans}
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
    tls = config.server.tls
    if tls is not None and tls.require_client_auth and not tls.client_ca_file:
        problems.append("server.tls.client_ca_file: required when require_client_auth is true")
    return problems


class Config(_Strict):
    """The whole configuration file."""

    server: ServerConfig = ServerConfig()
    providers: dict[Name, ProviderConfig]
    models: dict[Name, ModelConfig]
    tiers: list[Name] = Field(min_length=1)
    routing: RoutingConfig = RoutingConfig()
    state: StateConfig = StateConfig()
    decisions: DecisionLogConfig = DecisionLogConfig()
    agents: dict[Name, AgentConfig] = Field(default_factory=dict)
    classifier: ClassifierConfig = ClassifierConfig()
    shadow: ShadowConfig = ShadowConfig()
    auth: AuthConfig = AuthConfig()
    tenants: dict[Name, TenantConfig] = Field(default_factory=dict)
    plans: dict[Name, PlanConfig] = Field(default_factory=dict)
    budgets: BudgetsConfig = BudgetsConfig()
    cache: CacheConfig = CacheConfig()
    admission: AdmissionConfig = AdmissionConfig()
    observability: ObservabilityConfig = ObservabilityConfig()


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
    """``routing.cascade`` and ``routing.consensus`` against the tiers and models."""
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


def _format_pydantic(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required key is missing"
        problems.append(f"{path}: {message}")
    return problems


def parse_config(data: Any) -> Config:
    """Validate already-parsed YAML data; raises :class:`ConfigError` naming key paths."""
    if not isinstance(data, Mapping):
        raise ConfigError(["(top level): must be a mapping of keys"])
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_pydantic(exc)) from None
    problems = _cross_reference(config)
    problems += _cross_reference_access(config)
    if problems:
        raise ConfigError(problems)
    return config


def load_config_text(text: str, source: str = "<config>") -> Config:
    """Parse YAML text and validate it."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError([f"{source}: not valid YAML{where}"]) from None
    return parse_config(data)


def load_config(path: str | Path) -> Config:
    """Load and validate a config file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror or exc})"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    return load_config_text(text, str(path))


def default_config_text() -> str:
    """The embedded default: simulated cheap, mid and premium models, no keys needed."""
    return resources.files("quorum.server").joinpath("default.yaml").read_text("utf-8")


def default_config() -> Config:
    return load_config_text(default_config_text(), "<embedded default>")


def resolve_secrets(
    config: Config, environ: Mapping[str, str] | None = None
) -> dict[str, SecretStr]:
    """Read each provider's API key from its environment variable.

    Returns keys by provider name. Raises :class:`ConfigError` naming the key path of
    every provider whose variable is unset or empty.
    """
    env = os.environ if environ is None else environ
    keys: dict[str, SecretStr] = {}
    problems: list[str] = []
    for name, provider in config.providers.items():
        if provider.api_key_env is None:
            continue
        value = env.get(provider.api_key_env, "")
        if not value:
            problems.append(
                f"providers.{name}.api_key_env: environment variable "
                f"{provider.api_key_env} is not set"
            )
        else:
            keys[name] = SecretStr(value)
    if problems:
        raise ConfigError(problems)
    return keys
