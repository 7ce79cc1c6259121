"""The one place where errors become OpenAI-style HTTP error responses.

Every :class:`~quorum.server.errors.QuorumError` carries a gRPC code; its HTTP status is
the standard gRPC → HTTP mapping (``google.rpc.Code``), so the HTTP and gRPC front doors
always agree. The body is OpenAI's shape, so the vendor SDKs raise their typed errors::

    {"error": {"message": "...", "type": "invalid_request_error",
               "param": "temperature", "code": "invalid_request",
               "quorum": {"reason": "INVALID_REQUEST", "request_id": "...", ...}}}

``param`` names the offending request field (the first field violation, or the field a
hint came from); ``code`` is the error's reason in lower case; ``quorum`` adds the rest of
the account: the field violations (the first :data:`MAX_VIOLATIONS`, as the gRPC door's
``BadRequest`` lists them, and in ``more_violations`` how many more there were), and every
attempt when execution failed. A 429 carries ``Retry-After`` (and ``retry-after-ms``) when
the error says when to come back. A provider fault is never a bare 500: provider errors
map to 503/504/429/400 by their own codes, and only a bug in Quorum itself becomes a 500,
with a generic message.
"""

from __future__ import annotations

import contextlib
import math
import traceback
from collections.abc import Mapping
from typing import Any

import grpc
import structlog

from quorum.server.errors import (
    ExecutionFailed,
    FieldViolation,
    InvalidRequest,
    NotFound,
    QuorumError,
)
from quorum.server.frontdoor.account import attempt_json, plan_json
from quorum.server.service.status import MAX_VIOLATIONS
from quorum.server.values import value_type

log = structlog.get_logger("quorum.frontdoor")

# google.rpc.Code → HTTP status, as in google/rpc/code.proto.
HTTP_STATUS: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}

# HTTP status → OpenAI error ``type``.
_ERROR_TYPE: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    429: "rate_limit_error",
    499: "invalid_request_error",
    504: "timeout_error",
}

_BUDGET_REASONS = frozenset({"BUDGET_EXHAUSTED", "BUDGET_EXCEEDED", "QUOTA_EXHAUSTED"})
# InvalidRequest metadata: how many violations there were, when more than it lists (as
# the gRPC door's ErrorInfo says it); the body says it as ``more_violations``.
VIOLATION_COUNT = "violations"


class Violations:
    """Field violations in the order a check finds them. Only the first
    :data:`MAX_VIOLATIONS` are kept, the rest counted: a body of 200,000 bad keys costs
    200,000 checks, not 200,000 violations (or an error of megabytes)."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []
        self.total = 0

    @property
    def room(self) -> int:
        """How many more violations are kept."""
        return MAX_VIOLATIONS - len(self.items)

    def add(self, path: str, description: str) -> None:
        self.total += 1
        if len(self.items) < MAX_VIOLATIONS:
            self.items.append(FieldViolation(path, description))

    def count(self, n: int) -> None:
        """``n`` more violations, found and not described: there is no room for them."""
        self.total += n

    def extend(self, error: InvalidRequest) -> None:
        self.items.extend(error.violations[: self.room])
        self.total += violation_count(error)

    def error(self) -> InvalidRequest:
        """The error to raise: the kept violations, and how many there were in all."""
        error = InvalidRequest(self.items, self.total)
        if self.total > len(self.items):
            error.metadata[VIOLATION_COUNT] = str(self.total)
        return error


def violation_count(error: InvalidRequest) -> int:
    """How many violations ``error`` found, listed or not."""
    counted = error.metadata.get(VIOLATION_COUNT, "")
    listed = len(error.violations)
    return max(listed, int(counted)) if counted.isascii() and counted.isdigit() else listed


@value_type
class HttpError:
    """An error ready to send: status, OpenAI body and extra headers."""

    status: int
    body: dict[str, Any]
    headers: Mapping[str, str]


def error_type(status: int, reason: str) -> str:
    if status == 429 and reason in _BUDGET_REASONS:
        return "insufficient_quota"
    return _ERROR_TYPE.get(status, "server_error")


def retry_after_s(error: QuorumError) -> float | None:
    """When the caller may come back, if the error says."""
    if error.code is grpc.StatusCode.RESOURCE_EXHAUSTED:  # limits, budgets, throttled upstreams
        return error.retry_after_s
    return None


def _param(error: QuorumError, origins: Mapping[str, str]) -> str | None:
    if isinstance(error, InvalidRequest) and error.violations:
        return error.violations[0].field
    if "param" in error.metadata:
        return error.metadata["param"]
    if error.reason == "STRATEGY_INFEASIBLE":
        return origins.get("strategy", "model")
    return None


def http_error(
    error: QuorumError, *, request_id: str = "", origins: Mapping[str, str] | None = None
) -> HttpError:
    """The HTTP status, OpenAI error body and headers for ``error``.

    ``origins`` maps a routing hint (``strategy``, ``tier``, ...) to the request field it
    came from (``model`` or ``quorum.strategy``), so errors about it can name that field.
    """
    status = HTTP_STATUS.get(error.code, 500)
    reason = error.reason
    code = reason.lower()
    if isinstance(error, NotFound) and error.metadata.get("param") == "model":
        code = "model_not_found"
    extension: dict[str, Any] = {"reason": reason}
    if request_id:
        extension["request_id"] = request_id
    hidden = ("param", VIOLATION_COUNT) if isinstance(error, InvalidRequest) else ("param",)
    extra = {k: v for k, v in error.metadata.items() if k not in hidden}
    if extra:
        extension["metadata"] = extra
    if isinstance(error, InvalidRequest):
        listed = error.violations[:MAX_VIOLATIONS]
        extension["violations"] = [{"field": v.field, "description": v.description} for v in listed]
        more = violation_count(error) - len(listed)
        if more:
            extension["more_violations"] = more
    if isinstance(error, ExecutionFailed):
        extension["attempts"] = [attempt_json(a) for a in error.attempts]
        if error.plan is not None:
            extension["plan"] = plan_json(error.plan)
    headers: dict[str, str] = {}
    delay = retry_after_s(error)
    if delay is not None and status in (429, 503):
        headers["Retry-After"] = str(max(1, math.ceil(delay)))
        headers["retry-after-ms"] = str(max(0, round(delay * 1000)))
        extension["retry_after_s"] = delay
    body = {
        "error": {
            "message": error.message,
            "type": error_type(status, reason),
            "param": _param(error, origins or {}),
            "code": code,
            "quorum": extension,
        }
    }
    return HttpError(status, body, headers)


def internal_error(request_id: str = "") -> HttpError:
    """A bug in Quorum: a generic message, the request id for the logs."""
    where = f" for request {request_id}" if request_id else ""
    return HttpError(
        500,
        {
            "error": {
                "message": f"internal error; see server logs{where}",
                "type": "server_error",
                "param": None,
                "code": "internal",
                "quorum": {"reason": "INTERNAL", "request_id": request_id},
            }
        },
        {},
    )


def plain_error(status: int, message: str, code: str, param: str | None = None) -> HttpError:
    """An error of the HTTP layer itself (unknown path, wrong method, body too large)."""
    return HttpError(
        status,
        {
            "error": {
                "message": message,
                "type": error_type(status, code.upper()),
                "param": param,
                "code": code,
            }
        },
        {},
    )


def loggable(text: str) -> str:
    """``text`` as any log renderer can write it: lone UTF-16 surrogates, which UTF-8
    cannot encode, become ``\\udXXX`` escapes."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def log_internal_error(exc: BaseException, request_id: str) -> None:
    """Log a bug in Quorum with its traceback; never raises, so that writing the report
    cannot become a second failure (a message UTF-8 cannot carry, say)."""
    try:
        log.exception("http_internal_error", request_id=request_id)
    except Exception:
        details = loggable("".join(traceback.format_exception(exc)))
        with contextlib.suppress(Exception):
            log.error("http_internal_error", request_id=request_id, exception=details)
