"""429 with Retry-After through the real server: cool-downs, short waits, shared status."""

from __future__ import annotations

import time

import grpc
import pytest

from quorum.client import QuorumError
from quorum.route.v1 import types_pb2 as pb
from tests.conftest import running_server
from tests.fakes.common import Behaviour, Running
from tests.faults.upstreams import collect, config, kinds, outcomes, provider, route_or_error


@pytest.mark.parametrize("behaviour", ["ratelimit-30", "ratelimit-date-30"])
async def test_retry_after_cools_the_provider_down_and_it_is_skipped(
    oa: Running, oa2: Running, behaviour: str
) -> None:
    cfg = config(
        {"limited": provider(oa.base_url), "good": provider(oa2.base_url)},
        [("busy", "limited", behaviour), ("free", "good", "ok")],
    )
    async with running_server(cfg) as (_, client):
        first = await route_or_error(client)
        assert isinstance(first, pb.RouteResponse) and first.model == "free"
        assert first.attempts[0].error_reason == "PROVIDER_RATE_LIMITED"
        plan = await client.plan("Hello there")
        limited = next(p for p in plan.providers if p.provider == "limited")
        assert limited.breaker_state == pb.BREAKER_STATE_COOLING_DOWN
        assert limited.cooldown_remaining_s == pytest.approx(30, abs=2)  # seconds or HTTP date
        assert limited.failure_count == 0  # a 429 is not a fault: the breaker stays closed
        for _ in range(5):
            r = await route_or_error(client)
            assert isinstance(r, pb.RouteResponse) and r.model == "free"
    assert oa.server.stats.requests == 1  # nothing sent while cooling down


async def test_short_retry_after_is_waited_out_on_the_same_model(oa: Running) -> None:
    cfg = config(
        {"oa": provider(oa.base_url, retry={"max_rate_limit_wait_s": 0.5})},
        [("first", "oa", "ok"), ("second", "oa", "ok")],
    )
    oa.server.script.append(Behaviour.parse("ratelimit-0.2"))
    async with running_server(cfg) as (_, client):
        t0 = time.monotonic()
        r = await client.route("Hello there")
    assert time.monotonic() - t0 >= 0.2
    assert r.model == "first"  # the routing decision held
    assert outcomes(r.attempts) == [("first", "FAILED"), ("first", "SUCCEEDED")]


async def test_everything_rate_limited_is_resource_exhausted_with_retry_info(
    oa: Running, an: Running
) -> None:
    cfg = config(
        {"oa": provider(oa.base_url), "an": provider(an.base_url, kind="anthropic")},
        [("gpt", "oa", "ratelimit-20"), ("claude", "an", "ratelimit-8")],
    )
    async with running_server(cfg) as (_, client):
        error = await route_or_error(client)
        assert isinstance(error, QuorumError)
        assert error.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error.reason == "UPSTREAM_THROTTLED"
        assert error.retry_after_s == pytest.approx(8, abs=1)  # the soonest
        again = await route_or_error(client)  # both cooling down: nothing is sent
        assert isinstance(again, QuorumError)
        assert again.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert oa.server.stats.requests == an.server.stats.requests == 1


async def test_an_account_out_of_quota_is_set_aside_and_others_answer(oa: Running) -> None:
    cfg = config(
        {"broke": provider(oa.base_url), "paid": provider(oa.base_url)},
        [("first", "broke", "quota"), ("second", "paid", "ok")],
    )
    async with running_server(cfg) as (running, client):
        first = await client.route("Hello there")
        second = await client.route("Hello there")
        health = running.router.breakers.health("broke")
    assert first.model == second.model == "second"
    assert first.attempts[0].error_reason == "PROVIDER_QUOTA"
    assert [a.model for a in second.attempts] == ["second"]  # not asked again for a while
    assert health.state.value == "cooling_down" and health.cooldown_remaining_s > 50
    assert health.failure_count == 0
    assert oa.server.stats.by_behaviour["quota"] == 1


async def test_a_throttled_stream_ends_with_its_attempts_and_a_retry_delay(oa: Running) -> None:
    # The error event carries what Route's status carries: every attempt and when to
    # come back.
    cfg = config(
        {"oa": provider(oa.base_url, breaker={"scope": "model"})},
        [("a", "oa", "ratelimit-30"), ("b", "oa", "ratelimit-20")],
    )
    async with running_server(cfg) as (_, client):
        events = await collect(client, "Hello there")
    assert kinds(events) == ["plan", "attempt_started", "attempt_started", "error"]
    error = events[-1].error
    assert (error.code, error.reason) == ("RESOURCE_EXHAUSTED", "UPSTREAM_THROTTLED")
    assert [a.model for a in error.attempts] == ["a", "b"]
    assert error.retry_delay.ToTimedelta().total_seconds() == pytest.approx(20, abs=1)


async def test_a_throttled_request_is_charged_nothing(oa: Running) -> None:
    # Its 429s cost nothing: the reservation is released, not kept as spent.
    cfg = config(
        {"oa": provider(oa.base_url, breaker={"scope": "model"})},
        [("a", "oa", "ratelimit-30"), ("b", "oa", "ratelimit-20")],
        auth={"mode": "disabled"},
        tenants={"acme": {"budget": {"daily_usd": 100.0}}},
    )
    async with running_server(cfg) as (running, client):
        error = await route_or_error(client, tenant="acme")
        assert isinstance(error, QuorumError) and error.reason == "UPSTREAM_THROTTLED"
        budgets = running.router.guardrails.budgets
        assert budgets is not None
        (counter,) = budgets.counters("acme", running.router.config.tenants["acme"].budget)
        ((spent, reserved),) = await budgets.store.read([counter.key])
    assert (spent, reserved) == (0, 0)


async def test_retry_after_zero_is_a_short_pause_then_one_retry(oa: Running) -> None:
    # "Retry-After: 0" says now: not the default one-second cool-down (longer than the
    # wait allowed, so the request failed), and not an immediate storm either.
    cfg = config({"oa": provider(oa.base_url)}, [("m", "oa", "ok")])
    oa.server.script.append(Behaviour.parse("ratelimit-0"))
    async with running_server(cfg) as (running, client):
        r = await client.route("Hello there", timeout=5)
        assert outcomes(r.attempts) == [("m", "FAILED"), ("m", "SUCCEEDED")]
        assert running.router.breakers.health("oa").cooldown_remaining_s < 0.1
    assert oa.server.stats.requests == 2


@pytest.mark.parametrize(("kind", "status"), [("openai", 429), ("anthropic", 400)])
async def test_a_deployment_set_aside_for_quota_says_so_not_that_a_429_came(
    oa: Running, an: Running, kind: str, status: int
) -> None:
    # Anthropic's credit balance is a 400 and OpenAI's insufficient_quota a 429: either
    # way the account is out of money, which is what the requests refused meanwhile say.
    fake = oa if kind == "openai" else an
    cfg = config({"broke": provider(fake.base_url, kind)}, [("only", "broke", "quota")])
    async with running_server(cfg) as (_, client):
        first = await route_or_error(client)
        again = await route_or_error(client)
    assert isinstance(first, QuorumError) and first.reason == "ALL_ATTEMPTS_FAILED"
    assert first.attempts[0].error_reason == "PROVIDER_QUOTA"
    assert isinstance(again, QuorumError)
    assert (again.code, again.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "UPSTREAM_THROTTLED")
    (attempt,) = again.attempts
    cause = f"after the account ran out of quota or credit (HTTP {status})"
    assert "broke: cooling down for " in attempt.reason and attempt.reason.endswith(cause)
    assert cause in again.message and "after a 429" not in again.message
    assert fake.server.stats.requests == 1  # nothing sent while it cools down
