"""The CLI's rendering of errors."""

from __future__ import annotations

import grpc

from quorum.client import QuorumError
from quorum.server import render


def test_an_error_without_a_reason_has_no_stray_space() -> None:
    error = QuorumError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
    assert render.error(error) == "error: DEADLINE_EXCEEDED: Deadline Exceeded"


def test_an_error_with_a_reason_names_both() -> None:
    error = QuorumError(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "server busy", reason="OVERLOADED", retry_after_s=1.5
    )
    assert render.error(error).splitlines() == [
        "error: RESOURCE_EXHAUSTED OVERLOADED: server busy",
        "  retry after 1.5s",
    ]
