"""A status fits in gRPC's trailers whatever the error carries.

gRPC refuses trailers over 16 KiB, and the caller then gets RESOURCE_EXHAUSTED ("received
metadata size exceeds hard limit") instead of the error. A status goes out twice: its
message as ``grpc-message`` (percent-encoded) and the whole status, message included, as
``grpc-status-details-bin`` (base64). Both together stay under 8 KiB here.
"""

from __future__ import annotations

import base64
import urllib.parse
from typing import TypeVar

from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from quorum.route.v1 import types_pb2 as pb
from quorum.server import errors as e
from quorum.server.domain import Attempt, AttemptOutcome, GateCheck, GateVerdict
from quorum.server.service.status import (
    MAX_REASON_CHARS,
    MAX_VIOLATIONS,
    status_for,
)

TRAILER_BUDGET = 8 * 1024
M = TypeVar("M", bound=Message)
UPSTREAM_BODY = "The server had an error while processing your request. " * 20


def _trailer_bytes(status: status_pb2.Status) -> int:
    message = urllib.parse.quote(status.message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")
    return len(message) + len(base64.b64encode(status.SerializeToString()))


def _detail(status: status_pb2.Status, kind: type[M]) -> M | None:
    for packed in status.details:
        if packed.Is(kind.DESCRIPTOR):
            found = kind()
            packed.Unpack(found)
            return found
    return None


def _info(status: status_pb2.Status) -> error_details_pb2.ErrorInfo:
    info = _detail(status, error_details_pb2.ErrorInfo)
    assert isinstance(info, error_details_pb2.ErrorInfo)
    return info


def _violations(status: status_pb2.Status) -> list[tuple[str, str]]:
    bad = _detail(status, error_details_pb2.BadRequest)
    assert isinstance(bad, error_details_pb2.BadRequest)
    return [(v.field, v.description) for v in bad.field_violations]


def _attempts(status: status_pb2.Status) -> list[pb.Attempt]:
    failure = _detail(status, pb.FailureDetail)
    assert isinstance(failure, pb.FailureDetail)
    return list(failure.attempts)


def _failed(i: int, reason: str = UPSTREAM_BODY) -> Attempt:
    return Attempt(
        f"model-{i}",
        f"provider-{i}",
        "cheap",
        "primary",
        AttemptOutcome.FAILED,
        f"provider-{i}: HTTP 500: {reason}",
        error_reason="PROVIDER_UNAVAILABLE",
        gate=GateVerdict(False, (GateCheck("json_schema", False, reason),)),
    )


def test_echo_cuts_a_callers_value() -> None:
    assert e.echo("gpt-9") == "'gpt-9'"
    assert e.echo("m" * 20_000) == "'" + "m" * e.ECHO_CHARS + "…'"


def test_a_long_value_in_a_violation_is_cut() -> None:
    error = e.InvalidRequest([e.FieldViolation("tier", f"unknown tier {'t' * 20_000!r}")])
    status = status_for(error)
    assert _trailer_bytes(status) < TRAILER_BUDGET
    [(field, description)] = _violations(status)
    assert (
        field == "tier" and description.startswith("unknown tier 'ttt") and len(description) <= 300
    )


def test_many_violations_are_counted_not_all_listed() -> None:
    violations = [e.FieldViolation("params.stop", "at most 4 stop sequences")] + [
        e.FieldViolation(f"params.stop[{i}]", "must be 1 to 256 characters") for i in range(300)
    ]
    error = e.InvalidRequest(violations)
    assert error.message.endswith("; and 291 more")
    assert error.message.count("params.stop") == 10
    status = status_for(error)
    assert _trailer_bytes(status) < TRAILER_BUDGET
    listed = _violations(status)
    assert listed[0] == ("params.stop", "at most 4 stop sequences")
    assert len(listed) == MAX_VIOLATIONS
    assert _info(status).metadata["violations"] == "301"


def test_long_violations_are_listed_while_they_fit() -> None:
    long = "must be one of ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT, ROLE_TOOL " * 4
    error = e.InvalidRequest([e.FieldViolation(f"messages[{i}].role", long) for i in range(120)])
    status = status_for(error)
    assert _trailer_bytes(status) < TRAILER_BUDGET
    listed = _violations(status)
    assert 1 <= len(listed) < 120 and listed[0][0] == "messages[0].role"
    assert _info(status).metadata["violations"] == "120"


def test_a_few_violations_are_all_there() -> None:
    error = e.InvalidRequest([e.FieldViolation("hints.tier", "unknown tier 'gold'")])
    status = status_for(error)
    assert _violations(status) == [("hints.tier", "unknown tier 'gold'")]
    assert "violations" not in _info(status).metadata


def test_failed_attempts_with_long_reasons_fit() -> None:
    attempts = [_failed(i) for i in range(8)]
    error = e.AllAttemptsFailed(
        "all 8 candidates failed: " + "; ".join(f"{a.model}: {a.reason}" for a in attempts),
        attempts=attempts,
    )
    status = status_for(error)
    assert _trailer_bytes(status) < TRAILER_BUDGET
    assert _info(status).reason == "ALL_ATTEMPTS_FAILED"
    listed = _attempts(status)
    assert [a.model for a in listed] == [f"model-{i}" for i in range(8)]
    assert all(len(a.reason) <= MAX_REASON_CHARS for a in listed)
    assert all(len(c.reason) <= MAX_REASON_CHARS for a in listed for c in a.gate.checks)
    assert listed[0].reason.startswith("provider-0: HTTP 500: The server had an error")
    assert "attempts" not in _info(status).metadata


def test_the_most_attempts_a_request_can_make_still_fit() -> None:
    attempts = [_failed(i) for i in range(70)]
    error = e.AllAttemptsFailed(
        "all 70 candidates failed: " + "; ".join(f"{a.model}: {a.reason}" for a in attempts),
        attempts=attempts,
    )
    status = status_for(error)
    assert _trailer_bytes(status) < TRAILER_BUDGET
    listed = _attempts(status)
    assert listed and listed[0].model == "model-0"
    assert _info(status).metadata["attempts"] == "70"


def test_a_message_of_any_length_is_cut() -> None:
    status = status_for(e.ResourceExhausted("é" * 50_000, retry_after_s=1.0))
    assert _trailer_bytes(status) < TRAILER_BUDGET  # é percent-encodes as 6 bytes
    assert len(status.message.encode()) <= 1024
    assert status.message.endswith("…")
