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


class ServerConfig(_Strict):
    """The gRPC listener and its limits."""

    address: str = "[::]:50051"
    grace_period_s: float = Field(20.0, ge=0, le=600)
    max_connection_age_s: float = Field(300.0, gt=0)
    max_connection_age_grace_s: float = Field(30.0, ge=0)
    max_request_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_messages: int = Field(256, ge=1, le=10_000)
    max_concurrent_rpcs: int = Field(1024, ge=1)
    default_deadline_s: float = Field(60.0, gt=0, le=3600)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_prompts: bool = False


class BreakerConfig(_Strict):
    """Circuit breaker of one provider."""

    fail_max: int = Field(5, ge=1, le=1000)
    reset_timeout_s: float = Field(30.0, gt=0, le=3600)


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

    @field_validator("base_url")
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
    @classmethod
    def _url_scheme(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


def _default_skill() -> dict[DifficultyName, float]:
    return {"low": 0.97, "medium": 0.85, "high": 0.6}


def _default_capabilities() -> list[CapabilityName]:
    return ["streaming"]
    retry: RetryConfig = RetryConfig()
    limits: LimitsConfig = LimitsConfig()


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
    simulated: SimulatedBehaviour | None = None

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



class UseCasePolicy(_Strict):
    """A named policy a request selects with ``hints.use_case``."""

    priority: PriorityName | None = None
    tier: Name | None = None
    strategy: StrategyName | None = None


class RoutingConfig(_Strict):
    """How the planner chooses."""

    baseline_model: Name | None = None
    default_strategy: StrategyName = "auto"
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
    difficulty_tiers: dict[DifficultyName, Name] = Field(default_factory=dict)
    max_failover_attempts: int = Field(3, ge=1, le=20)
    max_upstream_calls: int = Field(8, ge=1, le=64)
    use_cases: dict[Name, UseCasePolicy] = Field(default_factory=dict)


class StateConfig(_Strict):
    """Where state shared across replicas lives."""

    redis_url: str | None = None

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value


class DecisionLogConfig(_Strict):
    """Where every routing decision (and later feedback) is written, as JSON lines."""

    sink: Literal["none", "stdout", "file", "redis"] = "stdout"
    path: str | None = None
    include_prompts: bool = False
    retention_s: float = Field(86_400.0, gt=0, le=30 * 86_400)
    max_entries: int = Field(100_000, ge=100, le=10_000_000)


class Config(_Strict):
    """The whole configuration file."""

    server: ServerConfig = ServerConfig()
    providers: dict[Name, ProviderConfig]
    models: dict[Name, ModelConfig]
    tiers: list[Name] = Field(min_length=1)
    routing: RoutingConfig = RoutingConfig()
    state: StateConfig = StateConfig()
    decisions: DecisionLogConfig = DecisionLogConfig()


def _suggest(value: str, known: Iterable[str]) -> str:
    names = sorted(known)
    close = difflib.get_close_matches(value, names, n=1)
    hint = f'; did you mean "{close[0]}"?' if close else ""
    return f"(known: {', '.join(names) or 'none'}){hint}"


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
    decisions = config.decisions
    if decisions.sink == "file" and not decisions.path:
        problems.append("decisions.path: required when decisions.sink is file")
    if decisions.sink == "redis" and not config.state.redis_url:
        problems.append("decisions.sink: redis needs state.redis_url")
    routing = config.routing
    namespace: Name = "quorum"
    refresh_interval_s: float = Field(0.25, gt=0, le=60)
    redis_timeout_s: float = Field(0.25, gt=0, le=30)
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


