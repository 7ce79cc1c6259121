"""The ``providers`` section: vendor endpoints, breakers, retries and limits."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from quorum.server.config.fields import Strict, check_url


class BreakerConfig(Strict):
    """Circuit breaker of one provider."""

    fail_max: int = Field(5, ge=1, le=1000)
    reset_timeout_s: float = Field(30.0, gt=0, le=3600)
    scope: Literal["provider", "model"] = Field(
        "provider",
        description="one breaker for the provider, or one per model deployment on it",
    )
    cold_timeout_s: float = Field(
        0.5,
        gt=0,
        le=3600,
        description="with no recent answer to compare, a timeout the caller's deadline cut "
        "short counts when the caller allowed at least this long",
    )


class RetryConfig(Strict):
    """Retries of one provider's failed calls, and how long a 429 may be waited out.

    A retry is taken only for a transient fault (5xx, 408, connection error, malformed
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


class LimitsConfig(Strict):
    """Client-side limits of one provider; beyond them requests queue, then fail over."""

    max_concurrency: int | None = Field(None, ge=1, le=100_000)
    requests_per_minute: int | None = Field(None, ge=1, le=100_000_000)
    tokens_per_minute: int | None = Field(None, ge=1, le=100_000_000_000)
    max_queue: int = Field(64, ge=0, le=100_000)
    max_queue_wait_s: float = Field(1.0, ge=0, le=600)


class ProviderConfig(Strict):
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
    def _url(cls, value: str) -> str:
        if value:
            check_url(value, ("http", "https"))
        return value.rstrip("/")
