"""The ``models`` section: each model's provider, tier, prices, capabilities and
deployments, and the simulated models' behaviour."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from quorum.server.config.fields import (
    MAX_TOKENS,
    CapabilityName,
    DifficultyName,
    Name,
    SensitivityName,
    Strict,
)


def _default_skill() -> dict[DifficultyName, float]:
    return {"low": 0.97, "medium": 0.85, "high": 0.6}


def _default_capabilities() -> list[CapabilityName]:
    return ["streaming"]


class SimulatedBehaviour(Strict):
    """How a simulated model behaves: latency, failures and answer quality."""

    latency_ms_p50: float = Field(300.0, ge=0, le=600_000)
    latency_ms_p95: float = Field(800.0, ge=0, le=600_000)
    ms_per_output_token: float = Field(0.0, ge=0, le=60_000)
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


class DeploymentConfig(Strict):
    """One way to reach a model: a provider and its id for the model there."""

    provider: Name
    model_id: str = ""
    weight: float = Field(1.0, gt=0, le=1000)


class HedgeConfig(Strict):
    """Hedged requests: a second call to the next candidate when the first is slow."""

    delay_ms: float | None = Field(
        None, gt=0, le=600_000, description="fixed delay; default the observed p95 latency"
    )
    min_delay_ms: float = Field(20.0, ge=0, le=600_000)
    initial_delay_ms: float = Field(
        1000.0, gt=0, le=600_000, description="delay until min_samples latencies are observed"
    )
    min_samples: int = Field(20, ge=1, le=10_000)


class ModelConfig(Strict):
    """A model Quorum may route to."""

    provider: Name = Field("", description="required unless deployments are listed")
    model_id: str = ""
    tier: Name
    input_usd_per_mtok: float = Field(ge=0, le=10_000)
    output_usd_per_mtok: float = Field(ge=0, le=10_000)
    # Input read from / written to the provider's prompt cache; unset: the vendor's usual
    # share of the input price (OpenAI reads 0.5, Anthropic reads 0.1 and writes 1.25,
    # Gemini reads 0.25, anything else the input price).
    cached_input_usd_per_mtok: float | None = Field(None, ge=0, le=10_000)
    cache_write_usd_per_mtok: float | None = Field(None, ge=0, le=10_000)
    context_window: int = Field(128_000, ge=256, le=MAX_TOKENS)
    max_output_tokens: int | None = Field(
        None,
        ge=1,
        le=MAX_TOKENS,
        description="the most it writes; requests asking for more go elsewhere",
    )
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
