"""The whole configuration file: one :class:`Config` made of the sections."""

from __future__ import annotations

from pydantic import Field

from quorum.server.config.fields import Name, Strict
from quorum.server.config.models import ModelConfig
from quorum.server.config.operations import (
    AdmissionConfig,
    AuthConfig,
    BudgetsConfig,
    CacheConfig,
    ObservabilityConfig,
    PlanConfig,
    TenantConfig,
)
from quorum.server.config.providers import ProviderConfig
from quorum.server.config.routing import (
    AgentConfig,
    ClassifierConfig,
    DecisionLogConfig,
    RoutingConfig,
    ShadowConfig,
    StateConfig,
)
from quorum.server.config.server import ServerConfig


class Config(Strict):
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
