"""A provider's ``timeout_s`` bounds a stream's silences, not its length, through the
real server: a long stream that keeps answering is not cut, blamed or counted against
the breaker; one that goes silent for longer than ``timeout_s`` is a provider timeout
that counts, and restarts on the next model; the caller's deadline bounds the whole
stream without counting against the provider."""

from __future__ import annotations

from quorum.client import QuorumError
from quorum.route.v1 import route_service_pb2 as svc
from tests.conftest import running_server
from tests.fakes.common import OK_TEXT, Running
from tests.faults.upstreams import collect, config, kinds, outcomes, provider, text_of

BREAKER = {"fail_max": 1, "reset_timeout_s": 60}


async def test_a_steady_stream_longer_than_timeout_s_completes_and_counts_nothing(
    oa: Running,
) -> None:
    # A chunk every 100 ms for about 1.1 s against timeout_s 0.4 (the repro: 150 ms,
    # timeout_s 1, cut after a second and the breaker opened).
    cfg = config(
        {"p": provider(oa.base_url, timeout_s=0.4, breaker=BREAKER)},
        [("a", "p", "drip-100"), ("b", "p", "drip-100")],
    )
    async with running_server(cfg) as (running, client):
        events = await collect(client, timeout=20)
        health = running.router.breakers.health("p")
        unary = await client.route("Hello there", timeout=5)
    assert kinds(events)[-1] == "final", events[-1]
    final = events[-1].final
    assert final.model == "a" and text_of(events) == OK_TEXT == final.content
    assert outcomes(final.attempts) == [("a", "SUCCEEDED")]
    assert final.attempts[0].latency_ms > 2 * 400  # it did outlast timeout_s
    assert (health.state.value, health.failure_count) == ("closed", 0)
    assert unary.model == "a"


async def test_a_stream_silent_mid_way_for_longer_than_timeout_s_counts_and_restarts(
    gm: Running, oa: Running
) -> None:
    # Gemini's first frame carries text; the next comes 3 s later, past timeout_s 0.3.
    cfg = config(
        {
            "g": provider(gm.base_url, kind="gemini", timeout_s=0.3, breaker=BREAKER),
            "o": provider(oa.base_url),
        },
        [("stalls", "g", "drip-3000"), ("steady", "o", "ok")],
    )
    async with running_server(cfg) as (running, client):
        events = await collect(client, timeout=20)
        health = running.router.breakers.health("g")
    order = kinds(events)
    assert order[-1] == "final" and order.count("fallback") == 1
    assert order.index("chunk") < order.index("fallback")  # it broke after chunks went out
    final = events[-1].final
    assert final.model == "steady" and text_of(events) == OK_TEXT
    assert outcomes(final.attempts) == [("stalls", "FAILED"), ("steady", "SUCCEEDED")]
    assert final.attempts[0].error_reason == "PROVIDER_TIMEOUT"
    assert final.attempts[0].latency_ms < 2000  # cut at the silence, not at the next frame
    assert health.state.value == "open"  # a provider gone silent counts


async def test_the_callers_deadline_bounds_a_steady_stream_without_blaming_the_provider(
    oa: Running,
) -> None:
    cfg = config(
        {"p": provider(oa.base_url, timeout_s=5, breaker=BREAKER)}, [("a", "p", "drip-250")]
    )
    async with running_server(cfg) as (running, client):
        events: list[svc.RouteStreamResponse] = []
        try:
            async for event in client.route_stream("Hello there", timeout=1.2):
                events.append(event)
        except QuorumError as exc:
            code = exc.code.name  # the caller's own deadline passed first
        else:
            assert kinds(events)[-1] == "error"  # the server's copy of it passed first
            code = events[-1].error.code
        health = running.router.breakers.health("p")
    assert code == "DEADLINE_EXCEEDED"
    assert "chunk" in kinds(events)
    assert (health.state.value, health.failure_count) == ("closed", 0)
