"""Turning a failed RPC's rich status into one typed exception."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from quorum.route.v1 import types_pb2

_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One bad request field, as named by the server."""

    field: str
    description: str


class QuorumError(Exception):
    """A failed Quorum RPC with its decoded status details."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        domain: str = "",
        metadata: dict[str, str] | None = None,
        field_violations: tuple[FieldViolation, ...] = (),
        retry_after_s: float | None = None,
        attempts: tuple[types_pb2.Attempt, ...] = (),
        plan: types_pb2.ExecutionPlan | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain
        self.metadata = metadata or {}
        self.field_violations = field_violations
        self.retry_after_s = retry_after_s
        self.attempts = attempts
        self.plan = plan  # the plan that was executed, when execution failed


def _unpack(details: list[any_pb2.Any], error: QuorumError) -> None:
    violations: list[FieldViolation] = []
    for detail in details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            error.reason, error.domain, error.metadata = (
                info.reason,
                info.domain,
                dict(info.metadata),
            )
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            error.retry_after_s = retry.retry_delay.ToNanoseconds() / 1e9
        elif detail.Is(types_pb2.FailureDetail.DESCRIPTOR):
            failure = types_pb2.FailureDetail()
            detail.Unpack(failure)
            error.attempts = tuple(failure.attempts)
            if failure.HasField("plan"):
                error.plan = failure.plan
    error.field_violations = tuple(violations)


def error_from_rpc(exc: grpc.RpcError) -> QuorumError:
    """Decode a ``grpc.RpcError`` (sync or aio) into a :class:`QuorumError`."""
    call = cast(Any, exc)  # sync and aio errors both implement grpc.Call
    code: grpc.StatusCode = call.code()
    message: str = call.details() or ""
    error = QuorumError(code, message)
    trailers: tuple[tuple[str, str | bytes], ...] = tuple(call.trailing_metadata() or ())
    for key, value in trailers:
        if key == _DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status()
            status.ParseFromString(value)
            _unpack(list(status.details), error)
    return error
