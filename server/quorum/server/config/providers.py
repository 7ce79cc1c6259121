"""The ``providers`` section: vendor endpoints, breakers, retries and limits."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator

from quorum.server.config.fields import Strict, check_url

# RFC 9110 5.6.2: a field name is a token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Headers the HTTP client writes itself, from the URL and the body, or that concern one
# connection only (RFC 9110 7.6.1): one from the config would go on the wire beside the
# client's own (two Content-Length or Host lines), or contradict the body's framing.
CLIENT_HEADERS = frozenset(
    {
        "connection",
        "content-length",
        "host",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


def _header_name(name: str) -> str:
    if not _TOKEN.fullmatch(name):
        raise ValueError(
            "not a valid header name: letters, digits and !#$%&'*+-.^_`|~ only "
            "(no spaces, colons or other characters; RFC 9110 token)"
        )
    if name.lower() in CLIENT_HEADERS:
        raise ValueError(
            f"{name} is written by the HTTP client itself (framing or connection header); "
            "it cannot be configured"
        )
    return name


def has_control_characters(value: str) -> bool:
    """Whether ``value`` holds a character the HTTP client refuses in a header (CR, LF,
    NUL and the other controls but tab), so every call that sent it would fail."""
    return any((ch < " " and ch != "\t") or ch == "\x7f" for ch in value)


def _header_value(value: str) -> str:
    # RFC 9110 5.5: visible ASCII and obs-text (sent as UTF-8), with spaces and tabs only
    # between them. The value is never repeated: it is often a credential.
    if has_control_characters(value):
        raise ValueError(
            "a header value must not contain control characters (CR, LF, NUL, ...): "
            "the HTTP client refuses them and every call would fail"
        )
    if value != value.strip(" \t"):
        raise ValueError("a header value must not start or end with a space or tab")
    return value


HeaderName = Annotated[str, AfterValidator(_header_name)]
HeaderValue = Annotated[str, AfterValidator(_header_value)]


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
    headers: dict[HeaderName, HeaderValue] = Field(
        default_factory=dict,
        description="sent with every call (remote embeddings too); each name once, in any case",
    )
    breaker: BreakerConfig = BreakerConfig()
    retry: RetryConfig = RetryConfig()
    limits: LimitsConfig = LimitsConfig()

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value:
            check_url(value, ("http", "https"))
        return value.rstrip("/")
