"""Quorum's one error hierarchy.

Every failure the request path can raise is a :class:`QuorumError`. Each class carries
the gRPC status code it maps to, a stable machine-readable ``reason`` (UPPER_SNAKE, sent
as ``google.rpc.ErrorInfo.reason``) and whether the condition is worth retrying on
another candidate. :mod:`quorum.server.service.status` is the one place that turns these into
``google.rpc.Status``.

    QuorumError
    ├── InvalidRequest            INVALID_ARGUMENT    caller sent a bad field (field violations)
    ├── NotFound                  NOT_FOUND           e.g. unknown request id in Feedback
    ├── Unauthenticated           UNAUTHENTICATED     missing or unknown token
    ├── PermissionDenied          PERMISSION_DENIED   tenant may not use a model/strategy/tool
    ├── NoCandidate               FAILED_PRECONDITION nothing satisfies capabilities/limits
    ├── StrategyInfeasible        FAILED_PRECONDITION forced strategy cannot run
    ├── ResourceExhausted         RESOURCE_EXHAUSTED  load shed, queue full, budget spent
    ├── RequestInFlight           ABORTED             the request id is being served already
    ├── ExecutionFailed                               execution ended without an answer
    │   ├── DeadlineExceeded      DEADLINE_EXCEEDED   the caller's deadline ran out
    │   ├── AllAttemptsFailed     UNAVAILABLE         every candidate failed (attempts kept)
    │   └── UpstreamRejected      INVALID_ARGUMENT    every provider refused the request (4xx)
    ├── ConfigError               (start-up only)     invalid configuration, names key paths
    └── ProviderError             (one upstream call; retryable ones fail over)
        ├── ProviderUnavailable       5xx, connection error, breaker open
        │   └── ProviderRequestTimeout    408: retried, but no breaker verdict
        ├── ProviderTimeout           no answer in time
        ├── ProviderRateLimited       429, with Retry-After
        ├── ProviderBadResponse       malformed body (retryable on another model)
        ├── ProviderRejected          4xx other than 429: the request itself was refused
        ├── ProviderAuthError         401/403: the provider's credentials are wrong
        └── ProviderRedirected        3xx: base_url is not the API's address (not followed)

Provider errors never reach the caller as their own status: the executor records them
as attempts and, when nothing succeeds, raises :class:`AllAttemptsFailed` listing them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

import grpc

from quorum.server.values import value_type

if TYPE_CHECKING:
    from quorum.server.domain import Attempt, ExecutionPlan


#: A caller's value is echoed in an error only this far (it may be megabytes long).
ECHO_CHARS = 64
#: Violations listed in an InvalidRequest's message (the details list more, see
#: service/status.py), and the length a violation's field path and description keep.
MESSAGE_VIOLATIONS = 10
MAX_FIELD_CHARS = 200
MAX_DESCRIPTION_CHARS = 300


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in "…" when it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def echo(value: str, limit: int = ECHO_CHARS) -> str:
    """A caller's value quoted for an error message, cut to ``limit`` characters."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


@value_type
class FieldViolation:
    """One bad field of a request: a dotted path and what is wrong with it."""

    field: str
    description: str


# The longest wait a status may ask a caller for (RetryInfo, Retry-After): a month's
# budget window and then some. Anything longer, or not finite (an upstream's
# "Retry-After: inf"), is cut to it; NaN means no hint.
MAX_RETRY_AFTER_S = 40 * 86_400.0


def bounded_retry_after(seconds: float | None) -> float | None:
    """``seconds`` as a wait a status can carry: within [0, MAX_RETRY_AFTER_S], or None."""
    if seconds is None or seconds != seconds:
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S)


class QuorumError(Exception):
    """Base of every Quorum error: a gRPC code, a reason and retryability."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN
    reason: str = "UNKNOWN"
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        metadata: Mapping[str, str] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})
        # When the caller may try again (sent as google.rpc.RetryInfo), if it may.
        self.retry_after_s = bounded_retry_after(retry_after_s)


class InvalidRequest(QuorumError):
    """The caller sent a request that cannot be served as it is."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_REQUEST"

    def __init__(self, violations: Sequence[FieldViolation], total: int = 0) -> None:
        # Every violation given is kept (each cut to a bounded length: a description may
        # echo a caller's value); the message lists the first few and counts the others,
        # out of ``total`` when the caller stopped collecting early.
        self.violations = tuple(
            v
            if len(v.field) <= MAX_FIELD_CHARS and len(v.description) <= MAX_DESCRIPTION_CHARS
            else FieldViolation(
                clip(v.field, MAX_FIELD_CHARS), clip(v.description, MAX_DESCRIPTION_CHARS)
            )
            for v in violations
        )
        listed = self.violations[:MESSAGE_VIOLATIONS]
        text = "; ".join(f"{v.field}: {v.description}" for v in listed)
        found = max(total, len(self.violations))
        if found > len(listed):
            text += f"; and {found - len(listed)} more"
        super().__init__(f"invalid request: {text}")


class NotFound(QuorumError):
    """A referenced object does not exist."""

    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class Unauthenticated(QuorumError):
    """No valid credentials were presented."""

    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class PermissionDenied(QuorumError):
    """The tenant is not allowed what it asked for."""

    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class NoCandidate(QuorumError):
    """No configured model satisfies the request's requirements."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "NO_CANDIDATE"


class StrategyInfeasible(QuorumError):
    """The caller forced a strategy that cannot run for this request."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "STRATEGY_INFEASIBLE"


class ResourceExhausted(QuorumError):
    """A limit was hit; ``retry_after_s`` tells the caller when to come back."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RESOURCE_EXHAUSTED"

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, metadata=metadata, retry_after_s=retry_after_s)
        if reason is not None:
            self.reason = reason


class RequestInFlight(QuorumError):
    """A request reused the id of one that is still being served (a concurrent retry):
    the first one's answer and charge stand; ``retry_after_s`` tells the caller when the
    id may be free again."""

    code = grpc.StatusCode.ABORTED
    reason = "REQUEST_IN_FLIGHT"


class ExecutionFailed(QuorumError):
    """Execution ended without an answer; every attempt is kept, in order."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "EXECUTION_FAILED"

    def __init__(
        self,
        message: str,
        *,
        attempts: Sequence[Attempt] = (),
        plan: ExecutionPlan | None = None,
        retry_after_s: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, metadata=metadata, retry_after_s=retry_after_s)
        self.attempts = tuple(attempts)
        self.plan = plan


class DeadlineExceeded(ExecutionFailed):
    """The caller's deadline ran out before an answer was ready."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "DEADLINE_EXCEEDED"


class AllAttemptsFailed(ExecutionFailed):
    """Every candidate failed."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "ALL_ATTEMPTS_FAILED"


class UpstreamThrottled(ExecutionFailed):
    """Every candidate was rate-limited or at its configured capacity: come back after
    ``retry_after_s``. The attempts cost nothing (a 429 is not billed)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "UPSTREAM_THROTTLED"


class UpstreamRejected(ExecutionFailed):
    """Every provider that was called refused the request itself (a 4xx other than 429)."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "UPSTREAM_REJECTED"


class ConfigError(QuorumError):
    """The configuration is invalid; each line names a key path."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "CONFIG_INVALID"

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))


class ListenError(OSError):
    """An address the server could not listen on. ``key`` is the config key that sets it,
    so that the CLI can name its flag instead when the address came from one."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class ProviderError(QuorumError):
    """One upstream call failed. ``status`` is the HTTP status when there was one."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "PROVIDER_ERROR"
    retryable = True
    # What the call's breaker learns: a failure (``counts_for_breaker``), that the
    # provider answered (not counted: a 4xx, an answer without the forced tool call), or
    # nothing at all (``breaker_verdict`` False: a 429, which cools the provider down
    # instead; the caller's own haste; Quorum's own adapter failing).
    counts_for_breaker: ClassVar[bool] = True
    breaker_verdict: ClassVar[bool] = True

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        metadata: Mapping[str, str] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, metadata=metadata, retry_after_s=retry_after_s)
        self.provider = provider
        self.status = status


class ProviderUnavailable(ProviderError):
    """5xx, connection refused or reset, or the provider's breaker is open."""

    reason = "PROVIDER_UNAVAILABLE"


class ProviderRequestTimeout(ProviderUnavailable):
    """408: the provider's server gave up waiting for the request (a slow upload, an idle
    connection it closed). Worth another try, as an unavailable provider is, but no
    evidence either way about its health: its breaker neither counts it nor resets."""

    counts_for_breaker = False
    breaker_verdict = False


class ProviderTimeout(ProviderError):
    """The provider did not answer in time."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "PROVIDER_TIMEOUT"


class CallerDeadlineTimeout(ProviderTimeout):
    """No answer before the caller's deadline, which gave the provider less than its own
    timeout and not clearly more than it usually takes: the caller's haste, not evidence
    against the provider, so its breaker does not count it."""

    counts_for_breaker = False
    breaker_verdict = False


class ProviderRateLimited(ProviderError):
    """429: the provider asks us to slow down, for ``retry_after_s`` when it says."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "PROVIDER_RATE_LIMITED"
    counts_for_breaker = False
    breaker_verdict = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = 429,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, provider=provider, status=status, retry_after_s=retry_after_s)


class ProviderBadResponse(ProviderError):
    """The provider answered with something that is not its documented format."""

    reason = "PROVIDER_BAD_RESPONSE"


class AdapterFault(ProviderBadResponse):
    """Quorum's adapter failed on a call (a bug, perhaps set off by odd input): recorded
    as a bad response, but no evidence against the provider, so its breaker does not
    count it."""

    counts_for_breaker = False
    breaker_verdict = False


class ProviderIgnoredToolChoice(ProviderError):
    """The model answered, but without the tool call the request forced: another model
    may honour it. The provider worked, so its breaker does not count it."""

    reason = "TOOL_CALL_MISSING"
    counts_for_breaker = False


class ProviderQuotaExhausted(ProviderError):
    """The provider account is out of quota or credit (OpenAI ``insufficient_quota``,
    Anthropic's credit balance): an operator's problem that waiting a second does not
    solve, unlike a rate limit. Another provider may answer; the breaker does not count it."""

    reason = "PROVIDER_QUOTA"
    counts_for_breaker = False


class ProviderRejected(ProviderError):
    """A 4xx other than 429: the provider refused this request; another model may not."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "PROVIDER_REJECTED"
    counts_for_breaker = False
    # Another model may accept what this one refused (e.g. a provider-specific limit).
    retryable = True


class ProviderAuthError(ProviderError):
    """401/403: the provider's credentials are missing or wrong (an operator problem)."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "PROVIDER_AUTH"
    counts_for_breaker = False


class ProviderRedirected(ProviderError):
    """3xx: the provider's ``base_url`` is not the API's own address. Never followed (the
    credentials would go along); an operator's problem, like wrong credentials, not the
    caller's: another model may answer, and the breaker does not count it."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "PROVIDER_REDIRECTED"
    counts_for_breaker = False


def all_error_classes() -> list[type[QuorumError]]:
    """Every concrete error class, for the test that proves each one is mapped."""
    found: list[type[QuorumError]] = []
    stack: list[type[QuorumError]] = [QuorumError]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return found
