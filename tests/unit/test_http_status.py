"""How an HTTP error status becomes a provider error, and what its breaker makes of it:
5xx, timeouts and connection errors count; 4xx other than 429 do not. 408 (the server
gave up waiting for the request) is retried like a 5xx but is no verdict either way;
409 is the request's own conflict, like any other 4xx."""

from __future__ import annotations

import pytest

from quorum.server.config import BreakerConfig
from quorum.server.domain import BreakerState
from quorum.server.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderRequestTimeout,
    ProviderUnavailable,
)
from quorum.server.providers.http import error_for_status, stream_timeout_for, timeout_for
from quorum.server.resilience.breakers import Breakers

MAPPING: dict[int, tuple[type[ProviderError], bool]] = {
    # status: (error class, counts against the breaker)
    400: (ProviderRejected, False),
    401: (ProviderAuthError, False),
    403: (ProviderAuthError, False),
    404: (ProviderRejected, False),
    408: (ProviderRequestTimeout, False),
    409: (ProviderRejected, False),
    413: (ProviderRejected, False),
    422: (ProviderRejected, False),
    429: (ProviderRateLimited, False),
    500: (ProviderUnavailable, True),
    502: (ProviderUnavailable, True),
    503: (ProviderUnavailable, True),
    504: (ProviderUnavailable, True),
    529: (ProviderUnavailable, True),
}


@pytest.mark.parametrize("status", sorted(MAPPING))
def test_status_mapping(status: int) -> None:
    cls, counts = MAPPING[status]
    error = error_for_status("p", status, "boom", {})
    assert type(error) is cls
    assert error.counts_for_breaker is counts
    assert (error.status, error.provider) == (status, "p")
    assert error.message == f"p: HTTP {status}: boom"


def test_only_5xx_count_against_the_breaker() -> None:
    for status in range(400, 600):
        error = error_for_status("p", status, "", {})
        assert error.counts_for_breaker is (status >= 500), status


def test_408_is_retried_and_fails_over_but_is_no_verdict() -> None:
    error = error_for_status("p", 408, "request timeout", {})
    assert isinstance(error, ProviderUnavailable)  # transient: retried, then failed over
    assert error.retryable
    assert not error.counts_for_breaker and not error.breaker_verdict


def _breakers(fail_max: int) -> Breakers:
    return Breakers({"p": BreakerConfig(fail_max=fail_max, reset_timeout_s=30)})


async def _ending_with(breakers: Breakers, status: int) -> None:
    async def call() -> None:
        raise error_for_status("p", status, "", {})

    with pytest.raises(ProviderError), breakers.guard("p"):
        await call()


@pytest.mark.parametrize("status", [408, 409])
async def test_408_and_409_never_open_the_breaker(status: int) -> None:
    breakers = _breakers(fail_max=2)
    for _ in range(5):
        await _ending_with(breakers, status)
    assert breakers.health("p").state is BreakerState.CLOSED
    assert breakers.health("p").failure_count == 0


async def test_a_408_between_503s_keeps_the_failure_count() -> None:
    # No verdict: an overloaded front end answering 408s between 503s still opens.
    breakers = _breakers(fail_max=3)
    for status in (503, 503, 408):
        await _ending_with(breakers, status)
    assert breakers.health("p").failure_count == 2
    await _ending_with(breakers, 503)
    assert breakers.health("p").state is BreakerState.OPEN


async def test_a_409_is_the_provider_answering() -> None:
    breakers = _breakers(fail_max=3)
    for status in (503, 503, 409):
        await _ending_with(breakers, status)
    assert breakers.health("p").failure_count == 0  # like any 4xx: it resets the count


def test_a_unary_call_is_bounded_as_a_whole() -> None:
    timeout = timeout_for(2.0, 5.0)
    assert (timeout.total, timeout.sock_connect, timeout.sock_read) == (2.0, 2.0, None)


def test_a_stream_is_bounded_by_its_silences_and_the_callers_deadline() -> None:
    timeout = stream_timeout_for(1.0, 20.0, 5.0)
    assert (timeout.total, timeout.sock_read, timeout.connect) == (20.0, 1.0, 1.0)
    assert timeout.sock_connect == 1.0
    assert stream_timeout_for(1.0, None, 0.5).total is None
    assert stream_timeout_for(1.0, None, 0.5).sock_connect == 0.5
