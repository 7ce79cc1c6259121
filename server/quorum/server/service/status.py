"""The one place where domain errors become gRPC statuses.

Each :class:`~quorum.server.errors.QuorumError` becomes a ``google.rpc.Status`` with
its code and message and these details: ``ErrorInfo`` always (reason, domain, metadata);
``BadRequest`` field violations for invalid requests; ``RetryInfo`` when the caller
should come back later; ``quorum.route.v1.FailureDetail`` with every attempt when
execution failed. Anything else is a bug in Quorum and becomes INTERNAL with a generic
message (details go to the log, never to the caller).

A status travels in trailers (``grpc-message`` and ``grpc-status-details-bin``, the
status again in base64), and gRPC refuses trailers over 16 KiB: the caller would get
RESOURCE_EXHAUSTED instead of the error. So the message is cut to
:data:`MAX_MESSAGE_BYTES`, each attempt's reason to :data:`MAX_REASON_CHARS`, and the
whole status to :data:`MAX_STATUS_BYTES` (under 8 KiB of trailers, base64 included): when
it does not fit, reasons are cut shorter, then the plan is left out, then the last
violations or attempts; ``ErrorInfo.metadata`` then says how many there were
(``violations``, ``attempts``). The log and the decision log keep everything.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from quorum.route.v1 import types_pb2 as pb
from quorum.server.domain import Attempt, ExecutionPlan, GateCheck, GateVerdict
from quorum.server.errors import (
    ExecutionFailed,
    FieldViolation,
    InvalidRequest,
    QuorumError,
    clip,
)
from quorum.server.service.convert import attempt_pb, plan_pb

DOMAIN = "quorum.dev"
MAX_MESSAGE_BYTES = 1024
MAX_STATUS_BYTES = 4608
MAX_VIOLATIONS = 50  # listed in BadRequest
MAX_REASON_CHARS = 200  # of an attempt (or one of its gate checks) in FailureDetail
SHORT_REASON_CHARS = 48  # when that does not fit
MAX_METADATA_CHARS = 256  # each ErrorInfo metadata value


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def _clip_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, ending in "…" when it was cut."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "…"


def _short(attempt: Attempt, chars: int) -> Attempt:
    """The attempt with its reason, and its gate checks' reasons, cut to ``chars``."""
    gate = attempt.gate
    if gate is not None and any(len(c.reason) > chars for c in gate.checks):
        gate = GateVerdict(
            gate.passed,
            tuple(GateCheck(c.name, c.passed, clip(c.reason, chars)) for c in gate.checks),
        )
    if len(attempt.reason) <= chars and gate is attempt.gate:
        return attempt
    return dataclasses.replace(attempt, reason=clip(attempt.reason, chars), gate=gate)


def _build(
    error: QuorumError,
    message: str,
    metadata: dict[str, str],
    violations: Sequence[FieldViolation],
    attempts: Sequence[Attempt] | None,
    plan: ExecutionPlan | None,
) -> status_pb2.Status:
    details = [
        _pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=metadata))
    ]
    if violations:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in violations
                    ]
                )
            )
        )
    retry_after = error.retry_after_s
    if retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_after * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    if attempts is not None:
        failure = pb.FailureDetail(attempts=[attempt_pb(a) for a in attempts])
        if plan is not None:
            failure.plan.CopyFrom(plan_pb(plan))
        details.append(_pack(failure))
    return status_pb2.Status(code=error.code.value[0], message=message, details=details)


def status_for(error: QuorumError) -> status_pb2.Status:
    """The rich status for a Quorum error, small enough for gRPC's trailers."""
    message = _clip_bytes(error.message, MAX_MESSAGE_BYTES)
    metadata = {k: clip(v, MAX_METADATA_CHARS) for k, v in error.metadata.items()}
    every_violation = error.violations if isinstance(error, InvalidRequest) else ()
    violations = every_violation[:MAX_VIOLATIONS]
    failed = isinstance(error, ExecutionFailed)
    every_attempt = error.attempts if isinstance(error, ExecutionFailed) else ()
    plan = error.plan if isinstance(error, ExecutionFailed) else None
    attempts = [_short(a, MAX_REASON_CHARS) for a in every_attempt]
    shortened = False
    while True:
        if len(violations) < len(every_violation):
            metadata["violations"] = str(len(every_violation))
        if len(attempts) < len(every_attempt):
            metadata["attempts"] = str(len(every_attempt))
        status = _build(error, message, metadata, violations, attempts if failed else None, plan)
        if status.ByteSize() <= MAX_STATUS_BYTES:
            return status
        if attempts and not shortened:
            attempts = [_short(a, SHORT_REASON_CHARS) for a in attempts]
            shortened = True
        elif plan is not None:
            plan = None
        elif len(violations) > 1:
            violations = violations[:-1]
        elif attempts:
            attempts = attempts[:-1]
        else:
            return status  # the message and ErrorInfo alone: bounded above


def internal_status(request_id: str = "") -> status_pb2.Status:
    """The status for a bug: generic message, the request id for the logs."""
    message = "internal error; see server logs" + (
        f" for request {request_id}" if request_id else ""
    )
    info = error_details_pb2.ErrorInfo(
        reason="INTERNAL", domain=DOMAIN, metadata={"request_id": request_id} if request_id else {}
    )
    return status_pb2.Status(code=code_pb2.INTERNAL, message=message, details=[_pack(info)])


def to_grpc(status: status_pb2.Status) -> grpc.Status:
    """Convert for ``context.abort_with_status``."""
    return rpc_status.to_status(status)
