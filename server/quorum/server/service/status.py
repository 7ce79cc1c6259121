"""The one place where domain errors become gRPC statuses.

Each :class:`~quorum.server.errors.QuorumError` becomes a ``google.rpc.Status`` with
its code and message and these details: ``ErrorInfo`` always (reason, domain, metadata);
``BadRequest`` field violations for invalid requests; ``RetryInfo`` when the caller
should come back later; ``quorum.route.v1.FailureDetail`` with every attempt when
execution failed. Anything else is a bug in Quorum and becomes INTERNAL with a generic
message (details go to the log, never to the caller).
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from quorum.route.v1 import types_pb2 as pb
from quorum.server.errors import (
    ExecutionFailed,
    InvalidRequest,
    QuorumError,
)
from quorum.server.service.convert import attempt_pb, plan_pb

DOMAIN = "quorum.dev"


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def status_for(error: QuorumError) -> status_pb2.Status:
    """The rich status for a Quorum error."""
    details = [
        _pack(
            error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=error.metadata)
        )
    ]
    if isinstance(error, InvalidRequest):
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in error.violations
                    ]
                )
            )
        )
    retry_after = error.retry_after_s
    if retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_after * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    if isinstance(error, ExecutionFailed):
        failure = pb.FailureDetail(attempts=[attempt_pb(a) for a in error.attempts])
        if error.plan is not None:
            failure.plan.CopyFrom(plan_pb(error.plan))
        details.append(_pack(failure))
    return status_pb2.Status(code=error.code.value[0], message=error.message, details=details)


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
