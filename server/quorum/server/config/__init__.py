"""Configuration: one YAML file, validated at start-up.

Loading happens in two steps. First the raw shape is parsed by pydantic models that
reject unknown keys and bad types. Then cross-references are checked (a model's
provider exists, its tier is listed, the baseline model exists, ...). Every problem
is reported with its key path, e.g. ``models.fast.provider: unknown provider "opena"
(known: openai, sim)``, and all problems are reported at once.

The sections live in modules named for them (:mod:`.server`, :mod:`.providers`,
:mod:`.models`, :mod:`.routing`, :mod:`.operations`), assembled by :mod:`.root`;
:mod:`.checks` holds the cross-references and :mod:`.load` the entry points. Everything
public is importable from here.
"""

from __future__ import annotations

from quorum.server.config.fields import (
    CapabilityName,
    DifficultyName,
    EnvName,
    HostPort,
    Name,
    NormalizerName,
    PriorityName,
    SensitivityName,
    StrategyName,
    Strict,
)
from quorum.server.config.load import (
    default_config,
    default_config_text,
    load_config,
    load_config_text,
    parse_config,
    resolve_secrets,
)
from quorum.server.config.models import (
    DeploymentConfig,
    HedgeConfig,
    ModelConfig,
    SimulatedBehaviour,
)
from quorum.server.config.operations import (
    AdmissionConfig,
    AuthConfig,
    BudgetLimits,
    BudgetsConfig,
    CacheConfig,
    ObservabilityConfig,
    PlanConfig,
    PlanRule,
    TenantConfig,
    TracingConfig,
    builtin_plans,
)
from quorum.server.config.providers import BreakerConfig, LimitsConfig, ProviderConfig, RetryConfig
from quorum.server.config.root import Config
from quorum.server.config.routing import (
    AgentConfig,
    CascadeConfig,
    ClassifierConfig,
    ConsensusConfig,
    DecisionLogConfig,
    EmbeddingClassifierConfig,
    GateConfig,
    LearnedRouterConfig,
    LLMClassifierConfig,
    PerformanceConfig,
    RoutingConfig,
    ShadowConfig,
    StateConfig,
    UseCasePolicy,
)
from quorum.server.config.server import ServerConfig, TlsConfig

__all__ = [
    "AdmissionConfig",
    "AgentConfig",
    "AuthConfig",
    "BreakerConfig",
    "BudgetLimits",
    "BudgetsConfig",
    "CacheConfig",
    "CapabilityName",
    "CascadeConfig",
    "ClassifierConfig",
    "Config",
    "ConsensusConfig",
    "DecisionLogConfig",
    "DeploymentConfig",
    "DifficultyName",
    "EmbeddingClassifierConfig",
    "EnvName",
    "GateConfig",
    "HedgeConfig",
    "HostPort",
    "LLMClassifierConfig",
    "LearnedRouterConfig",
    "LimitsConfig",
    "ModelConfig",
    "Name",
    "NormalizerName",
    "ObservabilityConfig",
    "PerformanceConfig",
    "PlanConfig",
    "PlanRule",
    "PriorityName",
    "ProviderConfig",
    "RetryConfig",
    "RoutingConfig",
    "SensitivityName",
    "ServerConfig",
    "ShadowConfig",
    "SimulatedBehaviour",
    "StateConfig",
    "StrategyName",
    "Strict",
    "TenantConfig",
    "TlsConfig",
    "TracingConfig",
    "UseCasePolicy",
    "builtin_plans",
    "default_config",
    "default_config_text",
    "load_config",
    "load_config_text",
    "parse_config",
    "resolve_secrets",
]
