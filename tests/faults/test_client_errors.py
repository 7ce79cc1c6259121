"""4xx answers through the real server: "5xx, timeouts and connection errors count; 4xx
other than 429 do not". A 408 (the provider gave up waiting for the request) is retried
and fails over like a 5xx but never counts against the breaker; a 409 is the request's
own conflict, refused like any other 4xx."""

from __future__ import annotations

import grpc
import pytest

from quorum.client import QuorumError
from quorum.route.v1 import types_pb2 as pb
from tests.conftest import running_server
from tests.fakes.common import Behaviour, Running
from tests.faults.upstreams import config, outcomes, provider, route_or_error

BREAKER = {"fail_max": 2, "reset_timeout_s": 60}


@pytest.mark.parametrize("status", [408, 409])
async def test_408_and_409_fail_over_without_opening_the_breaker(
    oa: Running, oa2: Running, status: int
) -> None:
    cfg = config(
        {"p": provider(oa.base_url, breaker=BREAKER), "g": provider(oa2.base_url)},
        [("m", "p", f"error-{status}"), ("backup", "g", "ok")],
    )
    async with running_server(cfg) as (running, client):
        for _ in range(4):
            r = await route_or_error(client)
            assert isinstance(r, pb.RouteResponse) and r.model == "backup", r
            assert outcomes(r.attempts) == [("m", "FAILED"), ("backup", "SUCCEEDED")]
        health = running.router.breakers.health("p")
    assert health.state.value == "closed"
    assert oa.server.stats.requests == 4  # never skipped: the breaker stayed closed


async def test_a_408_is_retried_on_the_same_deployment(oa: Running) -> None:
    cfg = config(
        {"p": provider(oa.base_url, breaker=BREAKER, retry={"max_retries": 1})},
        [("m", "p", "ok")],
    )
    async with running_server(cfg) as (running, client):
        oa.server.script.append(Behaviour.parse("error-408"))  # the first request only
        r = await route_or_error(client)
        health = running.router.breakers.health("p")
    assert isinstance(r, pb.RouteResponse), r
    assert outcomes(r.attempts) == [("m", "FAILED"), ("m", "SUCCEEDED")]
    assert r.attempts[0].error_reason == "PROVIDER_UNAVAILABLE"
    assert (health.state.value, health.failure_count) == ("closed", 0)


async def test_every_provider_answering_409_is_the_requests_fault(oa: Running) -> None:
    cfg = config(
        {"p": provider(oa.base_url, breaker=BREAKER)},
        [("a", "p", "error-409"), ("b", "p", "error-409")],
    )
    async with running_server(cfg) as (running, client):
        error = await route_or_error(client)
        health = running.router.breakers.health("p")
    assert isinstance(error, QuorumError)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "UPSTREAM_REJECTED")
    assert [a.error_reason for a in error.attempts] == ["PROVIDER_REJECTED"] * 2
    assert health.state.value == "closed"
