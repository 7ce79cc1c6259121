"""Tenants over a real channel: tokens, permissions, sensitivity and in-flight limits."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from quorum.client import AsyncQuorumClient, QuorumError
from quorum.route.v1 import route_service_pb2 as svc
from quorum.route.v1 import types_pb2 as pb
from quorum.server.app import RunningServer, create_server
from quorum.server.config import parse_config
from quorum.server.observability.metrics import sample_value
from tests.conftest import RedisServer, sim_config, with_model

TOKENS = {"acme": "tok-acme-0123456789", "free-co": "tok-free-abcdef", "vault-co": "tok-vault-42"}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tenant_config(**overrides: Any) -> dict[str, Any]:
    data = sim_config()
    data["models"]["vault"] = {
        "provider": "sim",
        "tier": "premium",
        "input_usd_per_mtok": 1.0,
        "output_usd_per_mtok": 2.0,
        "max_sensitivity": "restricted",
        "simulated": {"latency_ms_p50": 2, "latency_ms_p95": 4, "failure_rate": 1.0},
    }
    data["agents"] = {"support": {"description": "customer support"}, "sales": {}}
    data["tenants"] = {
        "acme": {"token_sha256": digest(TOKENS["acme"]), "plan": "enterprise"},
        "free-co": {
            "token_sha256": digest(TOKENS["free-co"]),
            "plan": "free",
            "tools": ["lookup"],
            "agents": ["support"],
        },
        "vault-co": {
            "token_sha256": digest(TOKENS["vault-co"]),
            "default_sensitivity": "restricted",
        },
    }
    data.update(overrides)
    return data


@asynccontextmanager
async def serving(data: dict[str, Any]) -> AsyncIterator[RunningServer]:
    running = create_server(parse_config(data), "127.0.0.1:0")
    await running.start()
    try:
        yield running
    finally:
        await running.drain(0.5)


def client(running: RunningServer, tenant: str | None, timeout: float = 10) -> AsyncQuorumClient:
    metadata = [("authorization", f"Bearer {TOKENS[tenant]}")] if tenant else []
    return AsyncQuorumClient(f"127.0.0.1:{running.port}", timeout=timeout, metadata=metadata)


async def test_missing_or_unknown_token_is_unauthenticated() -> None:
    async with serving(tenant_config()) as running:
        async with client(running, None) as anonymous:
            with pytest.raises(QuorumError) as info:
                await anonymous.route("hello")
        assert info.value.code is grpc.StatusCode.UNAUTHENTICATED
        assert info.value.reason == "UNAUTHENTICATED"
        wrong = AsyncQuorumClient(
            f"127.0.0.1:{running.port}", metadata=[("authorization", "Bearer nope")]
        )
        async with wrong:
            with pytest.raises(QuorumError) as info:
                await wrong.list_models()
        assert info.value.code is grpc.StatusCode.UNAUTHENTICATED
        assert "nope" not in info.value.message
        metrics = running.router.metrics
        labels = {"tenant": "_none", "strategy": "", "model": "", "code": "UNAUTHENTICATED"}
        assert sample_value(metrics, "quorum_requests_total", labels) == 1


async def test_an_overlong_token_is_refused_as_too_long_not_as_missing() -> None:
    token = "t" * 7000
    async with serving(tenant_config()) as running:
        long = AsyncQuorumClient(
            f"127.0.0.1:{running.port}", metadata=[("authorization", f"Bearer {token}")]
        )
        async with long:
            with pytest.raises(QuorumError) as info:
                await long.list_models()
    assert info.value.code is grpc.StatusCode.UNAUTHENTICATED
    assert info.value.reason == "UNAUTHENTICATED"
    assert "too long" in info.value.message and "4096" in info.value.message
    assert "missing" not in info.value.message
    assert "tttttttt" not in info.value.message


async def test_two_authorization_values_are_unauthenticated_in_either_order() -> None:
    # Which tenant a request runs as must not depend on the order of its credentials.
    tokens = [("authorization", f"Bearer {TOKENS[t]}") for t in ("acme", "free-co")]
    async with serving(tenant_config()) as running:
        for metadata in (tokens, tokens[::-1]):
            both = AsyncQuorumClient(f"127.0.0.1:{running.port}", metadata=metadata)
            async with both:
                with pytest.raises(QuorumError) as info:
                    await both.route("hello")
            assert info.value.code is grpc.StatusCode.UNAUTHENTICATED
            assert "send exactly one" in info.value.message


async def test_health_and_reflection_need_no_token() -> None:
    async with serving(tenant_config()) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="quorum.route.v1.RouteService")
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            call = stub.ServerReflectionInfo()
            await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            answer = await call.read()
            await call.done_writing()
            names = {s.name for s in answer.list_services_response.service}
            assert "quorum.route.v1.RouteService" in names


async def test_valid_token_routes_as_its_tenant_and_tenant_field_must_match() -> None:
    async with serving(tenant_config()) as running, client(running, "acme") as acme:
        r = await acme.route("What is 2 + 2?", tenant="acme")
        assert r.content
        with pytest.raises(QuorumError) as info:
            await acme.route("What is 2 + 2?", tenant="free-co")
        assert info.value.code is grpc.StatusCode.PERMISSION_DENIED
        assert "not the authenticated tenant" in info.value.message
        labels = {"tenant": "acme", "strategy": "single", "model": r.model, "code": "OK"}
        assert sample_value(running.router.metrics, "quorum_requests_total", labels) == 1


async def test_free_plan_is_held_to_its_tiers_strategies_tools_and_agents() -> None:
    async with serving(tenant_config()) as running, client(running, "free-co") as free:
        models = await free.list_models()
        assert {m.name for m in models.models} == {"flash", "flash-b"}
        hard = "Prove that the square root of 2 is irrational, rigorously, step by step."
        r = await free.route(hard)
        assert r.model in ("flash", "flash-b")
        hints = pb.RoutingHints(model="frontier", strategy=pb.STRATEGY_CONSENSUS_MAJORITY)
        params = pb.GenerationParams(tools=[pb.Tool(name="lookup"), pb.Tool(name="delete_all")])
        with pytest.raises(QuorumError) as info:
            await free.route("hello", hints=hints, params=params)
        err = info.value
        assert err.code is grpc.StatusCode.PERMISSION_DENIED
        assert "model frontier" in err.message
        assert "strategy consensus_majority" in err.message
        assert "tool delete_all" in err.message and "tool lookup" not in err.message
        with pytest.raises(QuorumError) as info:
            await free.route("hello", hints=pb.RoutingHints(tier="premium", agent="sales"))
        assert "tier premium" in info.value.message and "agent sales" in info.value.message
        plan = await free.plan(hard)
        assert {c.model for c in plan.plan.stages[0].candidates} <= {"flash", "flash-b"}


async def test_restricted_data_never_leaves_restricted_models() -> None:
    async with serving(tenant_config()) as running, client(running, "vault-co") as vault:
        with pytest.raises(QuorumError) as info:
            await vault.route("Summarise the patient file.")
        err = info.value
        assert err.code is grpc.StatusCode.UNAVAILABLE
        assert "restricted" in err.message and "never falls back" in err.message
        assert [a.model for a in err.attempts] == ["vault"]
        # A public request of the same tenant may use every model.
        r = await vault.route("hello", hints=pb.RoutingHints(sensitivity=pb.SENSITIVITY_PUBLIC))
        assert r.model != "vault"


async def test_disabled_auth_takes_the_tenant_from_the_request() -> None:
    data = tenant_config(auth={"mode": "disabled"})
    async with serving(data) as running, client(running, None) as anyone:
        models = await anyone.list_models()
        assert "frontier" in {m.name for m in models.models}
        r = await anyone.route("hi", tenant="free-co")
        assert r.model in ("flash", "flash-b")
        with pytest.raises(QuorumError) as info:
            await anyone.route("hi", tenant="nobody")
        assert info.value.code is grpc.StatusCode.PERMISSION_DENIED


async def test_in_flight_limits_shed_with_retry_info() -> None:
    data = tenant_config(admission={"max_inflight": 6, "retry_after_s": 0.25})
    data["tenants"]["acme"]["max_inflight"] = 2
    for name in ("flash", "flash-b", "mid", "frontier"):
        data = with_model(data, name, simulated={"latency_ms_p50": 900, "latency_ms_p95": 900})
    async with serving(data) as running:
        async with client(running, "acme") as acme, client(running, "free-co") as free:
            first = [asyncio.create_task(acme.route("hello")) for _ in range(2)]
            await asyncio.sleep(0.1)  # acme now has 2 in flight: its limit
            more = [asyncio.create_task(acme.route("hello")) for _ in range(3)]
            await asyncio.sleep(0.1)
            others = [asyncio.create_task(free.route("hello")) for _ in range(8)]
            results = await asyncio.gather(*first, *more, *others, return_exceptions=True)
            ok = [r for r in results if isinstance(r, pb.RouteResponse)]
            shed = [r for r in results if isinstance(r, QuorumError)]
            assert len(ok) + len(shed) == 13
            assert len(ok) == 6  # 2 for acme, 4 more up to the server's 6
            for err in shed:
                assert err.code is grpc.StatusCode.RESOURCE_EXHAUSTED
                assert err.retry_after_s == pytest.approx(0.25)
            reasons = {e.reason for e in shed}
            assert reasons == {"TENANT_CONCURRENCY_LIMIT", "OVERLOADED"}
            # Calls that run no model are never shed, nor counted: at the limit, with a
            # tenant's calls in flight, Plan, ListModels and Feedback still answer.
            busy = [asyncio.create_task(acme.route("hello")) for _ in range(2)]
            await asyncio.sleep(0.1)
            assert (await acme.plan("hello")).plan.stages
            assert (await acme.list_models()).models
            with pytest.raises(QuorumError) as unknown:
                await acme.feedback(
                    svc.FeedbackRequest(request_id="none-such", kind=svc.FEEDBACK_KIND_THUMBS_UP)
                )
            assert unknown.value.code is grpc.StatusCode.NOT_FOUND
            await asyncio.gather(*busy)
            # Shedding leaves the server healthy: the next calls go through.
            assert (await acme.route("hello")).content
        metrics = running.router.metrics
        assert sample_value(metrics, "quorum_shed_total", {"reason": "tenant_max_inflight"}) == 3
        assert sample_value(metrics, "quorum_shed_total", {"reason": "max_inflight"}) == 4
        assert sample_value(metrics, "quorum_inflight_requests") == 0


async def test_a_strategy_the_plan_forbids_is_replaced_after_planning() -> None:
    async with serving(tenant_config()) as running:
        async with client(running, "acme") as acme, client(running, "free-co") as free:
            critical = pb.RoutingHints(critical=True)
            assert (await acme.route("What is 17 * 23?", hints=critical)).strategy in (
                pb.STRATEGY_CONSENSUS_MAJORITY,
                pb.STRATEGY_CONSENSUS_JUDGE,
            )
            r = await free.route("What is 17 * 23?", hints=critical)
            assert r.strategy == pb.STRATEGY_SINGLE
            (guard,) = r.guards
            assert guard.startswith("strategy: plan free does not allow consensus")


@pytest.mark.queue_shedding
async def test_a_queueing_backlog_sheds_before_parsing_and_keeps_health() -> None:
    data = sim_config(admission={"retry_after_s": 0.5, "max_queue_delay_ms": 50})
    async with serving(data) as running:
        shedder = running.shedder
        assert shedder is not None
        async with AsyncQuorumClient(f"127.0.0.1:{running.port}", timeout=5) as anyone:
            assert (await anyone.route("hello")).content
            assert shedder.share == 0.0  # an idle server queues nothing
            shedder.max_share = 1.0
            shedder.share = 1.0
            shedder.target_s = 0.0  # every probe now counts as a backlog
            for _ in range(3):
                with pytest.raises(QuorumError) as info:
                    await anyone.route("hello")
                assert info.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
                assert info.value.reason == "OVERLOADED"
                assert info.value.retry_after_s == pytest.approx(0.5)
            metrics = running.router.metrics
            assert sample_value(metrics, "quorum_shed_share") == shedder.share > 0
            assert sample_value(metrics, "quorum_queue_delay_seconds") == shedder.delay_s
            with pytest.raises(QuorumError) as stream_info:
                async for _ in anyone.route_stream("hello"):
                    pass
            assert stream_info.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert stream_info.value.reason == "OVERLOADED"
            # Even bytes that are no RouteRequest get the same answer: nothing is parsed.
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
            raw = channel.unary_unary("/quorum.route.v1.RouteService/Route", None, None)
            with pytest.raises(grpc.aio.AioRpcError) as raw_info:
                await raw(b"\xff\xff\xff", timeout=5)
            assert raw_info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            health = health_pb2_grpc.HealthStub(channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            models = await anyone.list_models()  # only Route and RouteStream are shed
            assert models.models
            await channel.close(None)
            shedder.target_s = 0.05  # back to the configured target: the share decays
            for _ in range(100):
                if shedder.share == 0.0:
                    break
                await asyncio.sleep(0.05)
            assert (await anyone.route("hello")).content
        assert (
            sample_value(running.router.metrics, "quorum_shed_total", {"reason": "queue_delay"})
            >= 4
        )


async def test_feedback_only_from_the_tenant_that_made_the_request() -> None:
    async with serving(tenant_config()) as running:
        async with client(running, "acme") as acme, client(running, "free-co") as other:
            await acme.route("hello", request_id="acme-1")
            down = svc.FeedbackRequest(request_id="acme-1", kind=svc.FEEDBACK_KIND_THUMBS_DOWN)
            with pytest.raises(QuorumError) as info:
                await other.feedback(down)  # told it is unknown, like any unknown id
            assert info.value.code is grpc.StatusCode.NOT_FOUND
            assert (await acme.feedback(down)).recorded


async def test_two_tenants_using_one_request_id_keep_their_own_decisions(
    redis_server: RedisServer,
) -> None:
    shared = {"state": {"redis_url": redis_server.url}, "decisions": {"sink": "redis"}}
    async with serving(tenant_config(**shared)) as running, serving(tenant_config(**shared)) as b:
        async with client(running, "acme") as acme, client(b, "free-co") as other:
            await acme.route("hello", request_id="same-id")
            await other.route("hello", request_id="same-id")  # on another replica
            down = svc.FeedbackRequest(request_id="same-id", kind=svc.FEEDBACK_KIND_THUMBS_DOWN)
            for _ in range(50):  # the shared index is written off the request path
                try:
                    first = await other.feedback(down)
                    break
                except QuorumError:
                    await asyncio.sleep(0.02)
            assert first.recorded
            # acme's decision is still acme's, and its one verdict is still to give.
            assert (await acme.feedback(down)).recorded
    stream = redis.Redis.from_url(redis_server.url).xrange("quorum:decisions") or []
    lines = [json.loads((fields or {})[b"record"]) for _, fields in stream]
    verdicts = {
        (line["tenant"], line["first_verdict"]) for line in lines if line["type"] == "feedback"
    }
    assert verdicts == {("acme", True), ("free-co", True)}


@pytest.mark.parametrize("namespace", ["quorum", "prod"])
async def test_feedback_finds_a_decision_an_earlier_version_kept_under_the_id_alone(
    redis_server: RedisServer, namespace: str
) -> None:
    # During a rolling upgrade a replica of an earlier version keeps a decision under
    # "quorum:decisions:id:<request id>", whatever the namespace; Feedback on an upgraded
    # replica still finds it, for its tenant only, and a verdict the earlier version
    # recorded still counts as given. A decision this version made is judged on its own.
    store = redis.Redis.from_url(redis_server.url)
    store.set("quorum:decisions:id:old-1", "flash\tchat\tacme")
    store.set("quorum:decisions:id:old-2", "flash\tchat\tacme")
    store.set("quorum:decisions:judged:old-2", "1")
    shared = {
        "state": {"redis_url": redis_server.url, "namespace": namespace},
        "decisions": {"sink": "redis"},
    }
    async with serving(tenant_config(**shared)) as running:
        async with client(running, "acme") as acme, client(running, "free-co") as other:
            down = svc.FeedbackRequest(request_id="old-1", kind=svc.FEEDBACK_KIND_THUMBS_DOWN)
            with pytest.raises(QuorumError) as info:
                await other.feedback(down)
            assert info.value.code is grpc.StatusCode.NOT_FOUND
            assert (await acme.feedback(down)).recorded
            up = svc.FeedbackRequest(request_id="old-2", kind=svc.FEEDBACK_KIND_THUMBS_UP)
            assert (await acme.feedback(up)).recorded
            await other.route("hello", request_id="old-2")  # free-co's own, new decision
            assert (await other.feedback(up)).recorded
    stream = store.xrange(f"{namespace}:decisions") or []
    lines = [json.loads((fields or {})[b"record"]) for _, fields in stream]
    firsts = [
        (line["tenant"], line["request_id"], line["first_verdict"])
        for line in lines
        if line["type"] == "feedback"
    ]
    assert firsts == [("acme", "old-1", True), ("acme", "old-2", False), ("free-co", "old-2", True)]


async def test_a_reused_id_gets_its_verdict_again_across_replicas(
    redis_server: RedisServer,
) -> None:
    shared = {"state": {"redis_url": redis_server.url}, "decisions": {"sink": "redis"}}
    async with serving(tenant_config(**shared)) as running:
        async with client(running, "acme") as acme:
            verdicts = []
            for kind in (svc.FEEDBACK_KIND_THUMBS_DOWN, svc.FEEDBACK_KIND_THUMBS_UP):
                await acme.route("hello", request_id="again")  # the same id, a new decision
                await asyncio.sleep(0.05)  # the shared index is written off the request path
                verdicts.append(
                    await acme.feedback(svc.FeedbackRequest(request_id="again", kind=kind))
                )
            assert all(v.recorded for v in verdicts)
    stream = redis.Redis.from_url(redis_server.url).xrange("quorum:decisions") or []
    lines = [json.loads((fields or {})[b"record"]) for _, fields in stream]
    assert [line["first_verdict"] for line in lines if line["type"] == "feedback"] == [True, True]
