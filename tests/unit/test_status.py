"""Every error class maps to a rich status with its code; nothing falls to INTERNAL."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2

from quorum.route.v1 import types_pb2 as pb
from quorum.server import errors as e
from quorum.server.domain import Attempt, AttemptOutcome
from quorum.server.service.status import DOMAIN, internal_status, status_for

ATTEMPT = Attempt(
    "m",
    "p",
    "cheap",
    "primary",
    AttemptOutcome.FAILED,
    "upstream 503",
    error_reason="PROVIDER_UNAVAILABLE",
)


def _instance(cls: type[e.QuorumError]) -> e.QuorumError:
    if cls is e.InvalidRequest:
        return e.InvalidRequest([e.FieldViolation("messages", "at least one message")])
    if cls is e.ConfigError:
        return e.ConfigError(["models.x.provider: unknown"])
    if issubclass(cls, e.ExecutionFailed):
        return cls("failed", attempts=[ATTEMPT])
    if cls is e.ResourceExhausted:
        return e.ResourceExhausted("busy", retry_after_s=1.5)
    if cls is e.RequestInFlight:
        return e.RequestInFlight("request r1 is already being served", retry_after_s=1.0)
    if cls is e.ProviderRateLimited:
        return e.ProviderRateLimited("slow down", retry_after_s=2.0)
    return cls("boom")


def _details(status: object) -> dict[str, any_pb2.Any]:
    return {d.TypeName(): d for d in status.details}  # type: ignore[attr-defined]


@pytest.mark.parametrize("cls", e.all_error_classes(), ids=lambda c: c.__name__)
def test_every_error_class_is_mapped(cls: type[e.QuorumError]) -> None:
    error = _instance(cls)
    status = status_for(error)
    assert status.code == error.code.value[0]
    assert status.code not in (code_pb2.INTERNAL, code_pb2.UNKNOWN) or cls is e.QuorumError
    info = error_details_pb2.ErrorInfo()
    _details(status)["google.rpc.ErrorInfo"].Unpack(info)
    assert info.reason == error.reason
    assert info.domain == DOMAIN
    assert info.reason.isupper()


def test_concrete_classes_never_map_to_unknown() -> None:
    for cls in e.all_error_classes():
        if cls not in (e.QuorumError,):
            assert cls.code is not grpc.StatusCode.UNKNOWN, cls


def test_invalid_request_carries_field_violations() -> None:
    status = status_for(_instance(e.InvalidRequest))
    bad = error_details_pb2.BadRequest()
    _details(status)["google.rpc.BadRequest"].Unpack(bad)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("messages", "at least one message")
    ]


def test_execution_failure_lists_attempts() -> None:
    status = status_for(_instance(e.AllAttemptsFailed))
    assert status.code == code_pb2.UNAVAILABLE
    failure = pb.FailureDetail()
    _details(status)["quorum.route.v1.FailureDetail"].Unpack(failure)
    assert [a.reason for a in failure.attempts] == ["upstream 503"]


def test_resource_exhausted_has_retry_info() -> None:
    status = status_for(_instance(e.ResourceExhausted))
    retry = error_details_pb2.RetryInfo()
    _details(status)["google.rpc.RetryInfo"].Unpack(retry)
    assert retry.retry_delay.ToNanoseconds() == 1_500_000_000


def test_internal_status_reveals_nothing() -> None:
    status = internal_status("req-1")
    assert status.code == code_pb2.INTERNAL
    assert "req-1" in status.message
    assert "Traceback" not in status.message


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (float("inf"), e.MAX_RETRY_AFTER_S),
        (1e30, e.MAX_RETRY_AFTER_S),
        (-3.0, 0.0),
        (float("nan"), None),
        (None, None),
        (2.5, 2.5),
    ],
)
def test_a_retry_hint_is_bounded_whatever_it_was_given(
    given: float | None, kept: float | None
) -> None:
    error = e.ResourceExhausted("busy", retry_after_s=given)
    assert error.retry_after_s == kept
    status_for(error)  # a status can carry it (an unbounded float made it raise)
    limited = e.ProviderRateLimited("429", provider="p", retry_after_s=given)
    assert limited.retry_after_s == kept
