"""Operating sections: ``auth``, ``tenants``, ``plans``, ``budgets``, ``cache``,
``admission`` and ``observability``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from quorum.server.config.fields import (
    MAX_USD,
    EnvName,
    HostPort,
    Name,
    SensitivityName,
    StrategyName,
    Strict,
    check_url,
)


class AuthConfig(Strict):
    """How callers prove which tenant they are: ``authorization: Bearer <token>``.

    Tokens are never stored: each tenant lists the hex digest of its token, SHA-256 or
    (better, with ``token_hash: hmac_sha256``) HMAC-SHA256 under a server key read from
    ``hash_key_env``. ``mode`` defaults to ``tokens`` whenever tenants are configured;
    ``disabled`` must be written out and is meant for local use.
    """

    mode: Literal["tokens", "disabled"] | None = None
    token_hash: Literal["sha256", "hmac_sha256"] = "sha256"
    hash_key_env: EnvName | None = None


class BudgetLimits(Strict):
    """Spend limits of one scope (a tenant, or every tenant together), in USD; each at
    most :data:`~quorum.server.config.fields.MAX_USD` (counted in integer micro-dollars)."""

    daily_usd: float | None = Field(None, ge=0, le=MAX_USD)
    monthly_usd: float | None = Field(None, ge=0, le=MAX_USD)
    overdraft_usd: float = Field(
        0.0, ge=0, le=MAX_USD, description="how far past a limit a critical request may still go"
    )
    soft_limit_ratio: float | None = Field(
        None, gt=0, le=1, description="override of budgets.soft_limit_ratio for this scope"
    )


class BudgetsConfig(Strict):
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


class PlanRule(Strict):
    """What a plan allows, for all requests or for one use case."""

    max_tier: Name | None = None
    strategies: list[StrategyName] | None = None


class PlanConfig(PlanRule):
    """A commercial plan (free, pro, enterprise, ...) that policies key on."""

    use_cases: dict[Name, PlanRule] = Field(default_factory=dict)


def builtin_plans(tiers: Sequence[str]) -> dict[str, PlanConfig]:
    """The plans every config has unless ``plans`` redefines them: ``free`` keeps to the
    cheapest of ``tiers`` and never runs consensus, ``pro`` and ``enterprise`` allow all."""
    return {
        "free": PlanConfig(max_tier=tiers[0], strategies=["auto", "single", "cascade"]),
        "pro": PlanConfig(),
        "enterprise": PlanConfig(),
    }


class TenantConfig(Strict):
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


class AdmissionConfig(Strict):
    """Load shedding: requests beyond these get RESOURCE_EXHAUSTED with a retry delay."""

    max_inflight: int | None = Field(
        None, ge=1, le=1_000_000, description="default: server.max_concurrent_rpcs"
    )
    max_inflight_per_tenant: int | None = Field(None, ge=1, le=1_000_000)
    retry_after_s: float = Field(1.0, gt=0, le=3600)
    # Refuse a share of new Route/RouteStream calls while calls wait at least this long
    # in gRPC core before the server takes them (quorum.server.service.shedding); null: never.
    # 250 ms: a standing queue, not the tens of milliseconds a busy closed loop of
    # callers sees on a small machine.
    max_queue_delay_ms: float | None = Field(250.0, gt=0, le=60_000)


class CacheConfig(Strict):
    """Exact-match cache of final answers, per tenant; opt-in per request or by default."""

    enabled: bool = False
    default_allow: bool = False
    ttl_s: float = Field(300.0, gt=0, le=30 * 86_400)
    max_entries: int = Field(10_000, ge=1, le=10_000_000)
    max_entry_bytes: int = Field(256 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_memory_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, le=1024**4, description="in-process store only: total size bound"
    )
    cache_tool_calls: bool = False
    cache_nonzero_temperature: bool = False
    cache_streams: bool = False
    max_sensitivity: SensitivityName = Field(
        "internal", description="requests above this level are never cached"
    )


class TracingConfig(Strict):
    """OpenTelemetry tracing, exported with OTLP over gRPC."""

    otlp_endpoint: str = Field(min_length=1)
    sample_ratio: float = Field(0.1, ge=0, le=1)
    insecure: bool | None = Field(None, description="default: true for an http:// endpoint")
    service_name: str = Field("quorum", min_length=1)

    @field_validator("otlp_endpoint")
    @classmethod
    def _otlp_url(cls, value: str) -> str:
        return check_url(value, ("http", "https"))


class ObservabilityConfig(Strict):
    """Prometheus metrics and tracing."""

    metrics_address: HostPort | None = None
    tracing: TracingConfig | None = None
