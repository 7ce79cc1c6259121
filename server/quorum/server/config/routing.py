"""Routing sections: ``routing`` (policies, gate, cascade, consensus, performance),
``state``, ``agents``, ``classifier``, ``shadow`` and ``decisions``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from yarl import URL

from quorum.server.config.fields import (
    MAX_USD,
    DifficultyName,
    Example,
    Name,
    NormalizerName,
    PriorityName,
    StrategyName,
    Strict,
    check_url,
)


class UseCasePolicy(Strict):
    """A named policy a request selects with ``hints.use_case``."""

    priority: PriorityName | None = None
    tier: Name | None = None
    strategy: StrategyName | None = None


class GateConfig(Strict):
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


class CascadeConfig(Strict):
    """Cheapest tier first; escalate when the gate fails; skip tiers that keep failing."""

    auto: bool = Field(True, description="the planner may choose cascade for medium requests")
    tiers: list[Name] = Field(default_factory=list, description="empty: every tier")
    models_per_tier: int = Field(2, ge=1, le=10)
    escalation_threshold: float = Field(0.40, ge=0, le=1)
    window: int = Field(50, ge=1, le=100_000)
    min_samples: int = Field(20, ge=1, le=100_000)
    probe_share: float = Field(0.05, ge=0, le=1)
    gate: GateConfig = GateConfig()


class ConsensusConfig(Strict):
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


class PerformanceConfig(Strict):
    """Performance-based routing: order a tier's models by observed quality, latency and
    cost per task, as the request's priority weighs them."""

    enabled: bool = True
    explore_share: float = Field(
        0.0, ge=0, le=1, description="share of requests that Thompson-sample the order (opt-in)"
    )
    window: int = Field(200, ge=1, le=100_000)
    min_samples: int = Field(20, ge=1, le=100_000)
    smoothing: float = Field(
        0.1,
        gt=0,
        le=1,
        description="weight of the newest answer in the latency and cost averages",
    )
    latency_cost_min_samples: int = Field(
        3, ge=1, le=100_000, description="answers before a model's latency and cost count"
    )


class RoutingConfig(Strict):
    """How the planner chooses."""

    baseline_model: Name | None = None
    default_strategy: StrategyName = "auto"
    difficulty_tiers: dict[DifficultyName, Name] = Field(default_factory=dict)
    max_failover_attempts: int = Field(3, ge=1, le=20)
    performance: PerformanceConfig = PerformanceConfig()
    max_upstream_calls: int = Field(8, ge=1, le=64)
    ambiguous_below: float = Field(
        0.5,
        ge=0,
        le=1,
        description="a classification less confident than this moves one tier up (0: never)",
    )
    use_cases: dict[Name, UseCasePolicy] = Field(default_factory=dict)
    cascade: CascadeConfig = CascadeConfig()
    consensus: ConsensusConfig = ConsensusConfig()


class StateConfig(Strict):
    """Where state shared across replicas lives."""

    redis_url: str | None = None
    namespace: Name = "quorum"
    refresh_interval_s: float = Field(0.25, gt=0, le=60)
    redis_timeout_s: float = Field(0.25, gt=0, le=30)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if not value:
            return value
        if value.startswith("unix://"):  # unix:///path/to/redis.sock?db=0
            check_url(value, ("unix",), host=False, credentials=True, query=True)
            if not URL(value).path.strip("/"):
                raise ValueError("unix:// needs the socket's path, e.g. unix:///run/redis.sock")
            return value
        check_url(value, ("redis", "rediss", "unix"), credentials=True, query=True)
        db = URL(value).path.strip("/")
        if db and not db.isdigit():
            raise ValueError(f'the database after the host must be a number, not "{db}"')
        return value


class AgentConfig(Strict):
    """A named task domain: examples to recognise it, its prompt, tools and models."""

    description: str = ""
    examples: list[Example] = Field(default_factory=list)
    system_prompt: str = ""
    tools: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]] | None = None
    models: dict[Name, Name] = Field(default_factory=dict, description="tier -> model")


class RemoteEmbeddingConfig(Strict):
    """Embeddings from an OpenAI-compatible ``POST {base_url}/embeddings`` endpoint."""

    provider: Name = Field(description="a configured provider of kind openai")
    model: str = Field(min_length=1, max_length=256, description="the embedding model's id")
    timeout_s: float = Field(
        0.3, gt=0, le=30, description="per request; past it the embedding step is skipped"
    )
    dimensions: int | None = Field(
        None, ge=1, le=65_536, description="ask for shorter vectors (text-embedding-3 and later)"
    )


class EmbeddingClassifierConfig(Strict):
    """Semantic routes over example utterances: all-MiniLM-L6-v2 run locally, or a remote
    OpenAI-compatible embeddings endpoint when ``remote`` is set."""

    enabled: bool = True
    threshold: float = Field(0.45, ge=0, le=1)
    k: int = Field(5, ge=1, le=50)
    tasks: dict[Name, list[Example]] = Field(default_factory=dict)
    remote: RemoteEmbeddingConfig | None = None


class LLMClassifierConfig(Strict):
    """A cheap model asked for {task, difficulty, confidence} as strict JSON."""

    model: Name
    timeout_ms: float = Field(300.0, gt=0, le=10_000)


class LearnedRouterConfig(Strict):
    """The learned router trained on real routing data (``quorum router train``)."""

    artifact: str = Field("default", description='"default" or an artifact directory')
    source: str | None = Field(None, description="which trained head; default: the artifact's")
    difficulty: bool = Field(True, description="let it decide the difficulty")
    verifier: bool = Field(False, description="add its verifier to the cascade's gate")
    quality_target: str | None = Field(
        None,
        description='which stored calibration decides: 0.95 or "95% of premium" (of the premium '
        'model\'s quality), "80% of gap" or "50% of gap" (of the way from the cheapest model\'s '
        "quality to the premium's); default: the one the artifact was trained for",
    )

    @field_validator("quality_target", mode="before")
    @classmethod
    def _quality_target(cls, value: object) -> object:
        """Numbers and texts to one spelling: ``"95% of premium"`` or ``"80% of gap"``; the
        artifact's stored calibrations are checked at start-up (classify/build.py)."""
        import math  # here, not at the top: this class is all this change touches in the file
        import re

        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            percent, kind = float(value) * 100.0, "premium"
        elif isinstance(value, str) and (
            found := re.fullmatch(
                r"\s*(\d+(?:\.\d+)?)\s*%\s*(?:of\s+(?:the\s+)?(premium|gap))?\s*",
                value,
                re.IGNORECASE,
            )
        ):
            percent, kind = float(found.group(1)), (found.group(2) or "premium").lower()
        else:
            raise ValueError(
                "must be a fraction of the premium model's quality (e.g. 0.95), or "
                '"N% of premium" or "N% of gap" (e.g. "80% of gap")'
            )
        if not (math.isfinite(percent) and 0.0 < percent <= 100.0):
            raise ValueError("must be above 0 and at most 100% (a fraction in (0, 1])")
        return f"{round(percent, 6):g}% of {kind}"


class ClassifierConfig(Strict):
    """How requests are classified: rules, then embeddings, then an LLM when unsure."""

    confident_at: float = Field(0.7, ge=0, le=1)
    embedding: EmbeddingClassifierConfig = EmbeddingClassifierConfig()
    llm: LLMClassifierConfig | None = None
    learned: LearnedRouterConfig | None = None


class ShadowConfig(Strict):
    """Shadow evaluation: re-ask a cheaper tier for a sample of traffic, off the hot path."""

    sample_rate: float = Field(0.0, ge=0, le=1)
    daily_budget_usd: float = Field(1.0, ge=0, le=MAX_USD)
    timeout_s: float = Field(30.0, gt=0, le=600)


class DecisionLogConfig(Strict):
    """Where every routing decision (and later feedback) is written, as JSON lines."""

    sink: Literal["none", "stdout", "file", "redis"] = "stdout"
    path: str | None = None
    include_prompts: bool = False
    retention_s: float = Field(86_400.0, gt=0, le=30 * 86_400)
    max_entries: int = Field(50_000, ge=100, le=10_000_000)
    # Queued lines are written in one batch at most this often (0: as soon as possible).
    flush_interval_s: float = Field(0.05, ge=0, le=10)
