"""A provider whose base_url answers with a redirect, through the real server: refused
(never followed, so its credentials go nowhere else), failed over to a healthy model,
and when nothing else answers, a clear error naming the redirect, never INTERNAL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from quorum.client import QuorumError
from quorum.route.v1 import types_pb2 as pb
from tests.conftest import running_server
from tests.fakes import scripted
from tests.fakes.common import OK_TEXT, Running
from tests.fakes.scripted import Canned, Scripted
from tests.faults.upstreams import collect, config, kinds, outcomes, provider, route_or_error

KINDS = ("openai", "anthropic", "gemini")


@pytest.fixture
async def elsewhere() -> AsyncIterator[Scripted]:
    """Where the redirect points: records what reaches it (nothing must)."""
    async with scripted.serve() as upstream:
        yield upstream


@pytest.fixture
async def moved(elsewhere: Scripted) -> AsyncIterator[Scripted]:
    """A provider's base_url that redirects every request (307: a POST stays a POST)."""
    location = f"{elsewhere.root}/v1/chat/completions?key=QUERYSECRET"
    async with scripted.serve(Canned.redirect(307, location)) as upstream:
        yield upstream


@pytest.mark.parametrize("kind", KINDS)
async def test_a_redirecting_provider_fails_over_and_nothing_is_followed(
    oa: Running, moved: Scripted, elsewhere: Scripted, kind: str
) -> None:
    cfg = config(
        {
            "moved": provider(moved.root, kind, retry={"max_retries": 2}),
            "good": provider(oa.base_url),
        },
        [("first", "moved", "m"), ("second", "good", "ok")],
    )
    async with running_server(cfg) as (running, client):
        r = await route_or_error(client)
        assert isinstance(r, pb.RouteResponse), r
        assert r.model == "second" and r.content == OK_TEXT
        assert outcomes(r.attempts) == [("first", "FAILED"), ("second", "SUCCEEDED")]
        assert r.attempts[0].error_reason == "PROVIDER_REDIRECTED"
        host = elsewhere.root.removeprefix("http://")
        assert f"HTTP 307 redirect to {host}, not followed" in r.attempts[0].reason
        assert "QUERYSECRET" not in r.attempts[0].reason
        events = await collect(client)
        health = running.router.breakers.health("moved")
    assert kinds(events)[-1] == "final" and "fallback" not in kinds(events)
    assert elsewhere.seen == []  # the provider's key never left for the other host
    assert len(moved.seen) == 2  # one call a request: not retried on the same deployment
    assert health.state.value == "closed"  # an operator's mistake: not a provider fault


async def test_only_redirecting_providers_is_a_clear_error(
    moved: Scripted, elsewhere: Scripted
) -> None:
    cfg = config(
        {
            "an": provider(moved.root, "anthropic"),
            "ge": provider(moved.root, "gemini"),
        },
        [("claude", "an", "m"), ("gem", "ge", "m")],
    )
    async with running_server(cfg) as (_, client):
        error = await route_or_error(client)
        events = await collect(client)
    assert isinstance(error, QuorumError)
    # UNAVAILABLE, not INVALID_ARGUMENT: the caller's request is not what is wrong.
    assert (error.code, error.reason) == (grpc.StatusCode.UNAVAILABLE, "ALL_ATTEMPTS_FAILED")
    assert "HTTP 307 redirect to 127.0.0.1" in error.message and "QUERYSECRET" not in error.message
    assert [a.error_reason for a in error.attempts] == ["PROVIDER_REDIRECTED"] * 2
    assert kinds(events)[-1] == "error" and events[-1].error.reason == "ALL_ATTEMPTS_FAILED"
    assert elsewhere.seen == []
