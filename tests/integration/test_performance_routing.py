"""Performance-based routing through a live server: observed latency and cost, as well as
quality, order a tier's models for the request's priority, and replicas share them."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from quorum.route.v1 import route_service_pb2 as svc
from quorum.route.v1 import types_pb2 as pb
from quorum.server.config import parse_config
from quorum.server.observed import LocalWindows
from quorum.server.performance import explores
from tests.conftest import RedisServer, running_server


def _sim(p50_ms: int) -> dict[str, Any]:
    skill = {"low": 1.0, "medium": 1.0, "high": 1.0}
    return {"latency_ms_p50": p50_ms, "latency_ms_p95": p50_ms + 10, "skill": skill}


def _config(**state: Any) -> dict[str, Any]:
    """Two cheap models of equal skill, one slow and one fast (10% dearer), and a premium
    one; ``chat`` is latency first, ``careful`` quality first, both in the cheap tier."""
    return {
        "providers": {"sim": {"kind": "simulated"}},
        "tiers": ["cheap", "premium"],
        "models": {
            "slow": {
                "provider": "sim",
                "tier": "cheap",
                "input_usd_per_mtok": 0.10,
                "output_usd_per_mtok": 0.40,
                "simulated": _sim(150),
            },
            "fast": {
                "provider": "sim",
                "tier": "cheap",
                "input_usd_per_mtok": 0.11,
                "output_usd_per_mtok": 0.44,
                "simulated": _sim(2),
            },
            "big": {
                "provider": "sim",
                "tier": "premium",
                "input_usd_per_mtok": 5,
                "output_usd_per_mtok": 25,
                "simulated": _sim(2),
            },
        },
        "routing": {
            "baseline_model": "big",
            "default_strategy": "single",
            "difficulty_tiers": {"low": "cheap", "medium": "cheap", "high": "premium"},
            "performance": {"explore_share": 0.1, "min_samples": 3, "window": 20},
            "use_cases": {
                "chat": {"priority": "latency", "tier": "cheap"},
                "careful": {"priority": "quality", "tier": "cheap"},
            },
        },
        "decisions": {"sink": "none"},
        **({"state": state} if state else {}),
    }


def _steady(name: str) -> str:
    """A request id whose plan does not explore (exploration is a hash of the id)."""
    return next(f"{name}-{n}" for n in range(1000) if not explores(f"{name}-{n}", 0.1))


def _reason(response: svc.PlanResponse) -> str:
    (reason,) = [r.message for r in response.plan.reasons if r.code == "PERFORMANCE"]
    return reason


async def test_latency_priority_finds_the_fast_model_and_quality_still_rules() -> None:
    chat = pb.RoutingHints(use_case="chat")
    careful = pb.RoutingHints(use_case="careful")
    async with running_server(parse_config(_config())) as (_, client):
        answered: dict[str, str] = {}
        for i in range(30):
            r = await client.route(f"hello there {i}", hints=chat, request_id=f"lat-{i}")
            answered[r.request_id] = r.model
        served = Counter(answered.values())
        # The slow one answers while it is the only one measured (and a share of the
        # explored requests); then the fast one takes the traffic.
        assert served["fast"] >= 22, served
        planned = await client.plan("hello there", hints=chat, request_id=_steady("plan1"))
        assert planned.plan.stages[0].candidates[0].model == "fast"
        reason = _reason(planned)
        assert "latency priority, fastest within 0.10 of the best quality" in reason
        assert reason.index("fast 0.75 (prior), ") < reason.index("slow 0.75 (prior), ")
        assert " ms, $" in reason and "latency unmeasured" not in reason

        # Callers find the fast model's answers bad and the slow one's good.
        for request_id, model in answered.items():
            kind = svc.FEEDBACK_KIND_THUMBS_UP if model == "slow" else svc.FEEDBACK_KIND_THUMBS_DOWN
            await client.feedback(svc.FeedbackRequest(request_id=request_id, kind=kind))
        # Quality priority prefers the better model, however slow it is ...
        planned = await client.plan("hello there", hints=careful, request_id=_steady("plan2"))
        assert planned.plan.stages[0].candidates[0].model == "slow"
        assert "by observed quality: slow 1.00, " in _reason(planned)
        served_careful: Counter[str] = Counter()
        for i in range(10):
            r = await client.route(f"careful {i}", hints=careful, request_id=f"q-{i}")
            served_careful[r.model] += 1
        assert served_careful["slow"] >= 8, served_careful
        # ... and being fast does not make up for clearly worse answers under latency
        # priority either.
        planned = await client.plan("hello there", hints=chat, request_id=_steady("plan3"))
        assert planned.plan.stages[0].candidates[0].model == "slow"
        assert "fast 0.00, " in _reason(planned)


async def test_replicas_share_latency_and_cost_through_redis(redis_server: RedisServer) -> None:
    config = parse_config(_config(redis_url=redis_server.url))
    chat = pb.RoutingHints(use_case="chat")
    async with (
        running_server(config) as (_, a),
        running_server(config) as (replica_b, b),
    ):
        before = _reason(await b.plan("hello there", hints=chat, request_id=_steady("b11")))
        assert "slow 0.75 (prior), latency unmeasured" in before
        for i in range(4):
            await a.route(
                "hello there",
                hints=pb.RoutingHints(use_case="chat", model="slow"),
                request_id=f"s-{i}",
            )
        for _ in range(100):  # b refreshes its view of the shared figures in the background
            reason = _reason(await b.plan("hello there", hints=chat, request_id=_steady("b12")))
            if "slow 0.75 (prior), latency unmeasured" not in reason:
                break
            await asyncio.sleep(0.05)
        # b has not answered anything itself: the figures are a's, through Redis.
        assert replica_b.router.observed.latency.rates().keys() == {"slow/chat"}
        slow = reason[reason.index("slow ") :]
        own = slow.split(";")[0]
        assert " ms, $" in own and "(prior)" not in own.split(",", 2)[2]
        # The fast one is unmeasured: under latency priority it is tried first.
        assert (await b.plan("hello there", hints=chat, request_id=_steady("b13"))).plan.stages[
            0
        ].candidates[0].model == "fast"


async def test_figures_are_only_kept_per_task_and_model_answering() -> None:
    # Only for models the planner may reorder (big is alone in its tier), and only for
    # known tasks (a caller's own task name would add a key per name).
    async with running_server(parse_config(_config())) as (running, client):
        for i, model in enumerate(("slow", "big", "slow", "slow")):
            await client.route(
                "hello there", hints=pb.RoutingHints(model=model), request_id=f"b-{i}"
            )
        await client.route("hello there", hints=pb.RoutingHints(model="slow", task="my-own-task"))
        latency = running.router.observed.latency.rates()
        cost = running.router.observed.cost.rates()
    assert set(latency) == set(cost) == {"slow/chat"}
    assert 0 < latency["slow/chat"] < 1000
    assert cost["slow/chat"] > 0


async def test_a_callers_own_task_names_add_no_quality_keys() -> None:
    # Each new task name a caller sends would take one of the store's bounded keys: a
    # flood of names would leave none for the tasks the planner orders by.
    async with running_server(parse_config(_config())) as (running, client):
        for i in range(5):
            hints = pb.RoutingHints(strategy=pb.STRATEGY_CASCADE, task=f"made-up-{i}")
            r = await client.route("hello there", hints=hints, request_id=f"t-{i}")
            await client.feedback(
                svc.FeedbackRequest(request_id=f"t-{i}", kind=svc.FEEDBACK_KIND_THUMBS_UP)
            )
            assert any(a.HasField("gate") for a in r.attempts)
        quality = running.router.observed.quality
        assert isinstance(quality, LocalWindows) and quality.size == 0
        await client.route("hello there", hints=pb.RoutingHints(strategy=pb.STRATEGY_CASCADE))
        assert quality.size > 0  # a known task is learned as before
