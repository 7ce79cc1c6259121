"""Slow, reset, malformed and truncated upstreams, OpenAI- and Anthropic-kind: every
request ends with an answer or the right status, never INTERNAL or UNKNOWN."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from quorum.client import QuorumError
from quorum.route.v1 import types_pb2 as pb
from tests.conftest import running_server
from tests.fakes.common import OK_TEXT, Running
from tests.faults.upstreams import (
    collect,
    config,
    kinds,
    outcomes,
    provider,
    route_or_error,
    text_of,
)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("malformed", "PROVIDER_BAD_RESPONSE"),
        ("drop", "PROVIDER_UNAVAILABLE"),
        ("error-503", "PROVIDER_UNAVAILABLE"),
        ("error-529", "PROVIDER_UNAVAILABLE"),
    ],
)
@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_broken_answer_fails_over(
    oa: Running, an: Running, kind: str, fault: str, reason: str
) -> None:
    broken = oa if kind == "openai" else an
    cfg = config(
        {"broken": provider(broken.base_url, kind=kind), "good": provider(oa.base_url)},
        [("first", "broken", fault), ("second", "good", "ok")],
    )
    async with running_server(cfg) as (_, client):
        r = await route_or_error(client)
        assert isinstance(r, pb.RouteResponse), r
        assert r.model == "second" and r.content == OK_TEXT
        assert outcomes(r.attempts) == [("first", "FAILED"), ("second", "SUCCEEDED")]
        assert r.attempts[0].error_reason == reason
        events = await collect(client)
    assert kinds(events)[-1] == "final" and "fallback" not in kinds(events)  # before any chunk
    assert text_of(events) == OK_TEXT


@pytest.mark.parametrize("fault", ["drop-mid-stream", "truncated-stream", "error-mid-stream"])
async def test_anthropic_stream_breaking_mid_way_restarts_on_the_next_model(
    oa: Running, an: Running, fault: str
) -> None:
    cfg = config(
        {"an": provider(an.base_url, kind="anthropic"), "oa": provider(oa.base_url)},
        [("claude", "an", fault), ("gpt", "oa", "ok")],
    )
    async with running_server(cfg) as (_, client):
        events = await collect(client)
    order = kinds(events)
    assert order.count("fallback") == 1 and order[-1] == "final"
    assert events[order.index("fallback")].fallback.discarded_prefix_chars > 0
    assert text_of(events) == OK_TEXT


async def test_slower_than_the_deadline_is_deadline_exceeded_and_the_call_is_cancelled(
    oa: Running,
) -> None:
    cfg = config(
        {"oa": provider(oa.base_url)}, [("slow", "oa", "slow-3000"), ("slower", "oa", "slow-3000")]
    )
    async with running_server(cfg) as (_, client):
        r = await route_or_error(client, timeout=0.4)
        assert isinstance(r, QuorumError) and r.code is grpc.StatusCode.DEADLINE_EXCEEDED
        for _ in range(50):
            if oa.server.stats.client_disconnects:
                break
            await asyncio.sleep(0.02)
    assert oa.server.stats.client_disconnects == 1 and oa.server.stats.completed == 0


async def test_a_provider_slower_than_its_timeout_fails_over(oa: Running, oa2: Running) -> None:
    cfg = config(
        {"slow": provider(oa.base_url, timeout_s=0.2), "fast": provider(oa2.base_url)},
        [("sloth", "slow", "slow-2000"), ("hare", "fast", "ok")],
    )
    async with running_server(cfg) as (_, client):
        r = await route_or_error(client)
    assert isinstance(r, pb.RouteResponse) and r.model == "hare"
    assert r.attempts[0].error_reason == "PROVIDER_TIMEOUT"
    assert 150 <= r.attempts[0].latency_ms < 1000


async def test_mixed_faults_under_concurrency_never_leak_internal(oa: Running, an: Running) -> None:
    cfg = config(
        {"oa": provider(oa.base_url, timeout_s=0.3), "an": provider(an.base_url, kind="anthropic")},
        [("a", "oa", "malformed"), ("b", "an", "drop"), ("c", "oa", "slow-1000")],
    )
    async with running_server(cfg) as (_, client):
        results = await asyncio.gather(*(route_or_error(client) for _ in range(12)))
        streams = await asyncio.gather(*(collect(client) for _ in range(6)))
    for r in results:
        assert isinstance(r, QuorumError)
        assert r.code is grpc.StatusCode.UNAVAILABLE and len(r.attempts) == 3
    for events in streams:
        assert kinds(events)[0] == "plan" and kinds(events)[-1] == "error"
        assert events[-1].error.code == "UNAVAILABLE"


@pytest.mark.parametrize("kind", ["openai", "gemini"])
async def test_usage_the_server_did_not_report_is_estimated_not_free(
    oa: Running, gm: Running, kind: str
) -> None:
    fake = oa if kind == "openai" else gm
    cfg = config({"up": provider(fake.base_url, kind)}, [("quiet", "up", "no-usage")])
    async with running_server(cfg) as (_, client):
        unary = await client.route("Hello there")
        events = await collect(client)
    final = events[-1].final
    for answer in (unary, final):
        assert answer.content == OK_TEXT
        (attempt,) = answer.attempts
        assert attempt.usage.input_tokens > 0 and attempt.usage.output_tokens > 0
        assert answer.cost_usd == pytest.approx(attempt.cost_usd) and attempt.cost_usd > 0


async def test_a_gemini_finish_with_nothing_produced_fails_over(gm: Running) -> None:
    cfg = config(
        {"gm": provider(gm.base_url, "gemini")},
        [("broken", "gm", "malformed-call"), ("good", "gm", "ok")],
    )
    async with running_server(cfg) as (_, client):
        unary = await client.route("Hello there")
        events = await collect(client)
    for answer in (unary, events[-1].final):
        assert (answer.model, answer.content) == ("good", OK_TEXT)
        assert outcomes(answer.attempts) == [("broken", "FAILED"), ("good", "SUCCEEDED")]
        assert answer.attempts[0].error_reason == "PROVIDER_BAD_RESPONSE"


async def test_prompt_cache_reads_are_billed_at_their_price(oa: Running) -> None:
    cfg = config({"up": provider(oa.base_url)}, [("plain", "up", "ok"), ("warm", "up", "cached")])
    async with running_server(cfg) as (_, client):
        plain = await client.route("Hello there", hints=pb.RoutingHints(model="plain"))
        warm = await client.route("Hello there", hints=pb.RoutingHints(model="warm"))
    assert warm.usage.input_tokens == plain.usage.input_tokens
    assert warm.usage.cached_input_tokens == plain.usage.input_tokens // 2 > 0
    (attempt,) = warm.attempts
    assert attempt.usage.cached_input_tokens == warm.usage.cached_input_tokens
    # warm costs $0.2/M input, $0.8/M output; its cached half at OpenAI's usual half price.
    usage = warm.usage
    fresh = usage.input_tokens - usage.cached_input_tokens
    expected = (fresh * 0.2 + usage.cached_input_tokens * 0.1 + usage.output_tokens * 0.8) / 1e6
    assert warm.cost_usd == pytest.approx(expected)
