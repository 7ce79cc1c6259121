"""Cascade and consensus through a real server over a real channel, with simulated models
(and the fake OpenAI server where a real upstream connection must be seen closing)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from quorum.client import AsyncQuorumClient, QuorumError
from quorum.route.v1 import types_pb2 as pb
from quorum.server.config import parse_config
from quorum.server.execute.judge import judge_seed
from quorum.server.plan import is_probe
from quorum.server.providers.simulated import correct_core
from tests.conftest import running_server, sim_config, with_model
from tests.fakes import openai_server
from tests.fakes.common import Running

MATH = "What is 17 * 23?"
MEDIUM = "Explain why the sky is blue."  # the simulator's medium difficulty
LOW = "hello there"
PERFECT = {"low": 1.0, "medium": 1.0, "high": 1.0}
REFUSES_MEDIUM = {"skill": {"low": 1.0, "medium": 0.0, "high": 0.0}, "refusal_share": 1.0}
SLOW = {"latency_ms_p50": 3000, "latency_ms_p95": 3000}
# A reply that arrived at all arrived within the gRPC deadline (grpc enforces it); this
# bound only shows that the slow calls were not waited for, with slack for a busy machine.
NOT_WAITED_S = 2.0


def _hints(strategy: int, **fields: Any) -> pb.RoutingHints:
    return pb.RoutingHints(strategy=strategy, **fields)  # type: ignore[arg-type]


def _outcomes(r: pb.RouteResponse) -> list[tuple[str, str, int]]:
    return [(a.model, a.role, a.outcome) for a in r.attempts]


# ---- cascade -------------------------------------------------------------------------


async def test_cascade_passes_at_the_first_tier() -> None:
    async with running_server(parse_config(sim_config())) as (_, client):
        r = await client.route(MATH, hints=_hints(pb.STRATEGY_CASCADE))
    assert (r.strategy, r.model, r.content) == (pb.STRATEGY_CASCADE, "flash", "The answer is 391.")
    assert [s.role for s in r.plan.stages] == ["tier", "tier", "tier"]
    (attempt,) = r.attempts
    assert attempt.outcome == pb.ATTEMPT_OUTCOME_SUCCEEDED
    assert attempt.gate.passed
    assert [c.name for c in attempt.gate.checks] == ["non_empty", "length", "refusal"]
    assert list(r.cascade.tiers_tried) == ["cheap"]
    assert r.cascade.escalation_reason == "" and r.cascade.wasted_cost_usd == 0


async def test_cascade_escalates_when_the_gate_fails() -> None:
    data = with_model(sim_config(), "flash", simulated=REFUSES_MEDIUM)
    async with running_server(parse_config(data)) as (_, client):
        r = await client.route(MEDIUM, hints=_hints(pb.STRATEGY_CASCADE))
    assert r.model == "mid"
    rejected, ok = r.attempts
    assert (rejected.model, rejected.outcome) == ("flash", pb.ATTEMPT_OUTCOME_REJECTED)
    assert not rejected.gate.passed
    assert [c.name for c in rejected.gate.checks if not c.passed] == ["refusal"]
    assert (ok.model, ok.outcome) == ("mid", pb.ATTEMPT_OUTCOME_SUCCEEDED)
    assert list(r.cascade.tiers_tried) == ["cheap", "mid"]
    assert r.cascade.escalation_reason.startswith("cheap: gate: refusal")
    assert r.cascade.wasted_cost_usd == pytest.approx(rejected.cost_usd) and rejected.cost_usd > 0
    assert r.cost_usd == pytest.approx(rejected.cost_usd + ok.cost_usd)


async def test_cascade_returns_the_best_gated_answer_at_the_deadline() -> None:
    data = with_model(sim_config(), "flash", simulated=REFUSES_MEDIUM)
    for name in ("mid", "frontier"):
        data = with_model(data, name, simulated=SLOW)
    async with running_server(parse_config(data)) as (_, client):
        t0 = time.monotonic()
        r = await client.route(MEDIUM, hints=_hints(pb.STRATEGY_CASCADE), timeout=1.0)
        elapsed = time.monotonic() - t0
    assert elapsed < NOT_WAITED_S
    assert r.cascade.deadline_limited
    assert r.model == "flash"  # the refusal is all there is; the account says so
    assert not r.attempts[0].gate.passed
    assert r.attempts[1].outcome == pb.ATTEMPT_OUTCOME_CANCELLED


async def test_cascade_skips_a_tier_whose_p95_cannot_fit() -> None:
    data = with_model(sim_config(), "flash", simulated=REFUSES_MEDIUM)
    data = with_model(data, "mid", simulated={"latency_ms_p50": 400, "latency_ms_p95": 400})
    async with running_server(parse_config(data)) as (_, client):
        await client.route(LOW, hints=pb.RoutingHints(model="mid"))  # mid's latency is now known
        r = await client.route(MEDIUM, hints=_hints(pb.STRATEGY_CASCADE), timeout=0.3)
    assert r.model == "frontier"
    assert list(r.cascade.tiers_tried) == ["cheap", "premium"]
    assert "mid: skipped, p95 4" in r.cascade.escalation_reason
    assert not r.cascade.deadline_limited


# ---- the escalation guard ------------------------------------------------------------

GUARDED = {"window": 4, "min_samples": 2, "probe_share": 0.5, "escalation_threshold": 0.4}


def _ids(probe: bool, count: int, share: float = 0.5) -> list[str]:
    return [f"id-{i}" for i in range(1000) if is_probe(f"id-{i}", share) is probe][:count]


def _guarded(plan: pb.ExecutionPlan) -> bool:
    return any(r.code == "ESCALATION_GUARD" for r in plan.reasons)


def _guard_config(**state: Any) -> dict[str, Any]:
    data = with_model(sim_config(), "flash", simulated=REFUSES_MEDIUM)
    data["routing"]["cascade"] = GUARDED
    if state:
        data["state"] = state
    return data


async def _trip(client: AsyncQuorumClient) -> None:
    for rid in _ids(probe=False, count=2):
        r = await client.route(MEDIUM, request_id=rid, hints=_hints(pb.STRATEGY_CASCADE))
        assert list(r.cascade.tiers_tried) == ["cheap", "mid"]


async def _recover(client: AsyncQuorumClient) -> None:
    for rid in _ids(probe=True, count=3):
        r = await client.route(LOW, request_id=rid, hints=_hints(pb.STRATEGY_CASCADE))
        assert any(c.code == "GUARD_PROBE" for c in r.plan.reasons)
        assert list(r.cascade.tiers_tried) == ["cheap"]


async def test_guard_trips_and_recovers_in_process() -> None:
    quiet = _ids(probe=False, count=5)[-1]
    async with running_server(parse_config(_guard_config())) as (_, client):
        assert not _guarded((await client.plan(MEDIUM, request_id=quiet)).plan)
        await _trip(client)
        plan = (await client.plan(MEDIUM, request_id=quiet)).plan
        assert _guarded(plan)
        assert plan.strategy == pb.STRATEGY_CASCADE
        assert [c.model for c in plan.stages[0].candidates] == ["mid"]
        r = await client.route(MEDIUM, request_id=quiet, hints=_hints(pb.STRATEGY_CASCADE))
        assert list(r.cascade.tiers_tried) == ["mid"]
        assert r.cascade.route_escalation_rate == 1.0
        await _recover(client)
        plan = (await client.plan(MEDIUM, request_id=quiet)).plan
        assert not _guarded(plan)
        assert plan.stages[0].candidates[0].model == "flash"


async def _until(check: Any, within_s: float = 3.0) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.02)


async def test_guard_is_shared_through_redis_and_survives_its_outage(redis_server: Any) -> None:
    quiet = _ids(probe=False, count=5)[-1]
    config = parse_config(_guard_config(redis_url=redis_server.url, refresh_interval_s=0.05))
    async with running_server(config) as (a_server, a), running_server(config) as (_, b):

        async def b_guarded() -> bool:
            return _guarded((await b.plan(MEDIUM, request_id=quiet)).plan)

        async def a_free() -> bool:
            return not _guarded((await a.plan(MEDIUM, request_id=quiet)).plan)

        await _trip(a)
        await _until(b_guarded)  # tripped through A, seen by B
        await _recover(b)
        await _until(a_free)  # recovered through B, seen by A
        redis_server.stop()
        # Redis is gone: requests still succeed, and A falls back to its own windows,
        # where the route it tripped itself is still guarded.
        r = await a.route(MEDIUM, request_id=quiet, hints=_hints(pb.STRATEGY_CASCADE))
        assert r.content
        assert _guarded((await a.plan(MEDIUM, request_id=quiet)).plan)
        windows = a_server.router.observed.escalations
        assert not getattr(windows, "healthy", True)
        redis_server.start()

        async def healthy() -> bool:
            return bool(getattr(windows, "healthy", False))

        await _until(healthy)


def _with_schema(schema: str, request_id: str) -> pb.RouteRequest:
    request = pb.RouteRequest(
        request_id=request_id,
        messages=[pb.Message(role=pb.ROLE_USER, content=MEDIUM)],
        hints=_hints(pb.STRATEGY_CASCADE),
    )
    request.params.response_format.type = pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA
    request.params.response_format.json_schema = schema
    return request


async def test_a_request_no_tier_can_satisfy_does_not_teach_the_guard() -> None:
    # The guard is shared by every caller of a route. A schema no answer satisfies fails
    # the gate at every tier: that is the request's failure, not the cheap tier's, and one
    # caller sending it again and again must not send everyone's cascades to premium.
    quiet = _ids(probe=False, count=8)[-1]
    data = sim_config()
    data["routing"]["cascade"] = GUARDED
    async with running_server(parse_config(data)) as (_, client):
        before = (await client.plan(MEDIUM, request_id=quiet)).plan
        first, *more = _ids(probe=False, count=6)
        r = await client.route(_with_schema('{"enum": []}', first))
        assert [a.gate.passed for a in r.attempts] == [False, False]  # cheap, premium
        assert list(r.cascade.tiers_tried) == ["cheap", "premium"]
        for rid in more:
            await client.route(_with_schema('{"enum": []}', rid))
        after = (await client.plan(MEDIUM, request_id=quiet)).plan
        assert not _guarded(after)
        assert [s.candidates[0].model for s in after.stages] == [
            s.candidates[0].model for s in before.stages
        ]
        r = await client.route(MEDIUM, request_id=quiet, hints=_hints(pb.STRATEGY_CASCADE))
        assert list(r.cascade.tiers_tried) == ["cheap"] and r.model == "flash"


async def test_an_escalation_is_learned_once_a_later_tier_passes() -> None:
    # The cheap tier failed where a later tier passed: that is what the guard learns from.
    quiet = _ids(probe=False, count=8)[-1]
    async with running_server(parse_config(_guard_config())) as (server, client):
        await _trip(client)
        assert _guarded((await client.plan(MEDIUM, request_id=quiet)).plan)
        rates = server.router.observed.escalations.rates()
    assert rates == {"/cheap": 1.0, "/mid": 0.0}


# ---- consensus: majority -------------------------------------------------------------


@pytest.fixture
async def fake_openai() -> AsyncIterator[Running]:
    async with openai_server.serve() as running:
        yield running


def _with_upstream(data: dict[str, Any], running: Running, model_id: str) -> dict[str, Any]:
    data["providers"]["oa"] = {
        "kind": "openai",
        "base_url": running.base_url,
        "api_key_env": "QUORUM_TEST_OA_KEY",
    }
    data["models"]["upstream"] = {
        "provider": "oa",
        "model_id": model_id,
        "tier": "premium",
        "input_usd_per_mtok": 5.0,
        "output_usd_per_mtok": 25.0,
        "capabilities": ["json_mode", "json_schema", "streaming"],
    }
    return data


async def test_majority_exits_early_and_closes_the_cancelled_upstream_call(
    fake_openai: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUORUM_TEST_OA_KEY", "sk-test")
    data = _with_upstream(sim_config(), fake_openai, "slow-5000")
    data["routing"]["consensus"] = {"models": ["upstream", "flash", "flash-b"]}
    async with running_server(parse_config(data)) as (_, client):
        t0 = time.monotonic()
        r = await client.route(MATH, hints=_hints(pb.STRATEGY_CONSENSUS_MAJORITY))
        elapsed = time.monotonic() - t0
        stats = fake_openai.server.stats
        for _ in range(200):
            if stats.client_disconnects:
                break
            await asyncio.sleep(0.01)
    assert elapsed < 2.0
    assert stats.requests == 1 and stats.client_disconnects == 1 and stats.completed == 0
    c = r.consensus
    assert c.early_exit and r.content == "The answer is 391."
    assert c.normalizer == "numeric"
    assert [(g.normalized, g.weight, sorted(g.models)) for g in c.groups] == [
        ("391", 2.0, ["flash", "flash-b"])
    ]
    assert (c.winner_group, c.agreement) == (0, 1.0)
    answers = {a.model: a for a in c.answers}
    assert answers["upstream"].cancelled and answers["upstream"].group == -1
    assert not answers["flash"].cancelled and answers["flash"].normalized == "391"
    cancelled = next(a for a in r.attempts if a.model == "upstream")
    assert cancelled.outcome == pb.ATTEMPT_OUTCOME_CANCELLED
    assert "already decided" in cancelled.reason
    # The provider had the prompt and may bill it: its estimated input is counted, and paid.
    assert cancelled.usage.input_tokens > 0 and cancelled.usage.output_tokens == 0
    assert cancelled.cost_usd > 0
    assert r.cost_usd == pytest.approx(sum(a.cost_usd for a in r.attempts))


async def test_majority_outvotes_and_breaks_ties_by_capability() -> None:
    data = sim_config()
    data = with_model(data, "flash", simulated={"skill": {"medium": 0.0}, "refusal_share": 0.0})
    data["routing"]["consensus"] = {"models": ["flash", "flash-b", "mid"], "early_exit": False}
    async with running_server(parse_config(data)) as (_, client):
        r = await client.route(MEDIUM, hints=_hints(pb.STRATEGY_CONSENSUS_MAJORITY))
        tie = await client.route(
            MEDIUM, hints=_hints(pb.STRATEGY_CONSENSUS_MAJORITY, consensus_size=2)
        )
    assert correct_core(MEDIUM) in r.content
    assert r.consensus.agreement == pytest.approx(2 / 3)
    outcomes = {m: o for m, _, o in _outcomes(r)}
    assert outcomes["flash"] == pb.ATTEMPT_OUTCOME_OUTVOTED
    assert r.model == "mid"  # the most capable member of the winning group answers
    assert "tied" in tie.consensus.tie_break and tie.model == "flash-b"


async def test_majority_honours_the_deadline() -> None:
    data = sim_config()
    for name in ("mid", "frontier"):
        data = with_model(data, name, simulated=SLOW)
    async with running_server(parse_config(data)) as (_, client):
        t0 = time.monotonic()
        r = await client.route(MATH, hints=_hints(pb.STRATEGY_CONSENSUS_MAJORITY), timeout=1.0)
        assert time.monotonic() - t0 < NOT_WAITED_S
    assert r.model == "flash" and not r.consensus.early_exit
    cancelled = [a for a in r.attempts if a.outcome == pb.ATTEMPT_OUTCOME_CANCELLED]
    assert {a.model for a in cancelled} == {"mid", "frontier"}
    assert all("no time left" in a.reason for a in cancelled)


# ---- consensus: judge ----------------------------------------------------------------


def _judge_config(**consensus: Any) -> dict[str, Any]:
    data = sim_config()
    data = with_model(data, "flash", simulated={"skill": {"medium": 0.0}, "refusal_share": 0.0})
    data["routing"]["consensus"] = {
        "models": ["flash", "flash-b", "mid"],
        "judge_model": "frontier",
        **consensus,
    }
    return data


async def test_judge_scores_shuffled_anonymous_candidates() -> None:
    async with running_server(parse_config(_judge_config())) as (_, client):
        r = await client.route(
            MEDIUM, request_id="judge-1", hints=_hints(pb.STRATEGY_CONSENSUS_JUDGE)
        )
    judge = r.consensus.judge
    assert judge.model == "frontier" and judge.seed == judge_seed("judge-1")
    assert sorted(judge.presented_order) == ["flash", "flash-b", "mid"]
    assert judge.rationale and not judge.fallback_reason and not judge.synthesized
    assert correct_core(MEDIUM) in r.content and r.model in ("flash-b", "mid")
    scores = {a.model: a.judge_score for a in r.consensus.answers}
    assert scores["flash"] < 0.5 < min(scores["flash-b"], scores["mid"])
    judged = next(a for a in r.attempts if a.role == "judge")
    assert judged.outcome == pb.ATTEMPT_OUTCOME_SUCCEEDED and judged.cost_usd > 0
    assert r.cost_usd == pytest.approx(sum(a.cost_usd for a in r.attempts))


async def test_judge_synthesizes_the_final_answer() -> None:
    async with running_server(parse_config(_judge_config(synthesize=True))) as (_, client):
        r = await client.route(MEDIUM, hints=_hints(pb.STRATEGY_CONSENSUS_JUDGE))
    assert r.consensus.judge.synthesized and r.model == "frontier"
    assert correct_core(MEDIUM) in r.content
    assert len(r.consensus.answers) == 3  # the candidates stay in the account
    # The baseline is the premium model answering the request, not reading every
    # candidate as the judge did (the judge is that same model here).
    (judge,) = [a for a in r.attempts if a.role == "judge"]
    assert r.baseline_cost_usd < judge.cost_usd
    assert r.baseline_cost_usd > 0


@pytest.mark.parametrize(
    ("judge", "consensus", "reason"),
    [
        ({"simulated": {"failure_rate": 1.0}}, {}, "judge call failed"),
        ({"simulated": SLOW}, {"judge_timeout_s": 0.2}, "judge timed out after 0.200s"),
    ],
)
async def test_judge_failure_falls_back_to_majority(
    judge: dict[str, Any], consensus: dict[str, Any], reason: str
) -> None:
    data = with_model(_judge_config(**consensus), "frontier", **judge)
    async with running_server(parse_config(data)) as (_, client):
        t0 = time.monotonic()
        r = await client.route(MEDIUM, hints=_hints(pb.STRATEGY_CONSENSUS_JUDGE))
        assert time.monotonic() - t0 < 1.5
    assert reason in r.consensus.judge.fallback_reason
    assert correct_core(MEDIUM) in r.content  # the majority of two correct voters
    assert r.consensus.agreement == pytest.approx(2 / 3)
    (attempt,) = [a for a in r.attempts if a.role == "judge"]
    if "timed out" in reason:  # cut off while it worked: its prompt is charged
        assert attempt.cost_usd > 0 and attempt.usage.input_tokens > 0


async def test_malformed_judge_reply_falls_back_to_majority(
    fake_openai: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUORUM_TEST_OA_KEY", "sk-test")
    data = _with_upstream(_judge_config(judge_model="upstream"), fake_openai, "ok")
    async with running_server(parse_config(data)) as (_, client):
        r = await client.route(MEDIUM, hints=_hints(pb.STRATEGY_CONSENSUS_JUDGE))
    # The fake answers JSON mode with {"answer": 42, ...}: valid JSON, but no scores.
    assert 'judge reply unusable: "scores" is missing' in r.consensus.judge.fallback_reason
    judged = next(a for a in r.attempts if a.role == "judge")
    assert judged.outcome == pb.ATTEMPT_OUTCOME_REJECTED
    assert correct_core(MEDIUM) in r.content


async def test_judge_honours_the_deadline() -> None:
    data = with_model(_judge_config(), "frontier", simulated=SLOW)
    async with running_server(parse_config(data)) as (_, client):
        t0 = time.monotonic()
        r = await client.route(MEDIUM, hints=_hints(pb.STRATEGY_CONSENSUS_JUDGE), timeout=1.0)
        assert time.monotonic() - t0 < NOT_WAITED_S
    assert "judge timed out" in r.consensus.judge.fallback_reason


# ---- the planner's choice, seen from outside -----------------------------------------


async def test_plan_rpc_shows_the_strategy_tree() -> None:
    async with running_server(parse_config(sim_config())) as (_, client):
        cascade = (await client.plan(MEDIUM)).plan
        consensus = (await client.plan(MATH, hints=pb.RoutingHints(critical=True))).plan
        judged = (await client.plan(MATH, hints=_hints(pb.STRATEGY_CONSENSUS_JUDGE))).plan
    assert cascade.strategy == pb.STRATEGY_CASCADE
    assert [s.role for s in cascade.stages] == ["tier", "tier", "tier"]
    assert cascade.reasons[0].code == "AUTO_CASCADE"
    assert consensus.strategy == pb.STRATEGY_CONSENSUS_MAJORITY
    assert [s.role for s in judged.stages] == ["voters", "judge"]
    for p in (cascade, consensus, judged):
        assert 0 < p.estimated_cost_min_usd <= p.estimated_cost_max_usd


async def test_infeasible_forced_strategy_is_failed_precondition() -> None:
    async with running_server(parse_config(sim_config())) as (_, client):
        hints = _hints(pb.STRATEGY_CONSENSUS_MAJORITY, max_cost_usd=0.0002)
        with pytest.raises(QuorumError) as info:
            await client.route(MEDIUM, hints=hints)
    assert info.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.reason == "STRATEGY_INFEASIBLE"
    assert info.value.message.startswith("strategy consensus_majority cannot run for this request")


async def test_a_forced_model_is_never_escalated_or_outvoted() -> None:
    # A forced model is never swapped for another: forcing a multi-call strategy beside
    # it is refused naming hints.model; a strategy the planner chose runs single.
    refusals = {
        pb.STRATEGY_CASCADE: "a forced model cannot be escalated from or to; drop hints.model",
        pb.STRATEGY_CONSENSUS_MAJORITY: "a forced model cannot be outvoted; drop hints.model",
    }
    async with running_server(parse_config(sim_config())) as (_, client):
        for strategy, refusal in refusals.items():
            with pytest.raises(QuorumError) as info:
                await client.route(MATH, hints=_hints(strategy, model="frontier"))
            assert info.value.code is grpc.StatusCode.FAILED_PRECONDITION
            assert info.value.reason == "STRATEGY_INFEASIBLE"
            assert info.value.message.endswith(refusal)
        r = await client.route(MEDIUM, hints=pb.RoutingHints(model="frontier"))
    assert (r.strategy, r.model) == (pb.STRATEGY_SINGLE, "frontier")


@pytest.mark.parametrize("ceiling", [0.0016, 0.002, 0.005, 0.0117, 0.05])
async def test_a_cascade_plan_and_route_stay_within_the_cost_ceiling(ceiling: float) -> None:
    hints = _hints(pb.STRATEGY_CASCADE, max_cost_usd=ceiling)
    async with running_server(parse_config(sim_config())) as (_, client):
        planned = (await client.plan(MEDIUM, hints=hints)).plan
        routed = await client.route(MEDIUM, hints=hints)
    for p in (planned, routed.plan):
        assert p.strategy == pb.STRATEGY_CASCADE
        assert 0 < p.estimated_cost_min_usd <= p.estimated_cost_max_usd <= ceiling
    assert routed.cost_usd <= ceiling


async def test_upstream_call_cap_holds_in_every_strategy() -> None:
    data = sim_config()
    data["routing"]["max_upstream_calls"] = 2
    data["routing"]["consensus"] = {"size": 2}
    for name in data["models"]:
        data = with_model(data, name, simulated={"failure_rate": 1.0})
    async with running_server(parse_config(data)) as (_, client):
        for strategy in (pb.STRATEGY_CASCADE, pb.STRATEGY_CONSENSUS_MAJORITY):
            with pytest.raises(QuorumError) as info:
                await client.route(MEDIUM, hints=_hints(strategy))
            sent = [a for a in info.value.attempts if a.outcome == pb.ATTEMPT_OUTCOME_FAILED]
            assert len(sent) <= 2


async def test_a_tied_vote_can_go_to_the_judge() -> None:
    data = _judge_config(tie_break="judge", models=["flash", "flash-b"])
    async with running_server(parse_config(data)) as (_, client):
        r = await client.route(
            MEDIUM, hints=_hints(pb.STRATEGY_CONSENSUS_MAJORITY, consensus_size=2)
        )
    assert [s.role for s in r.plan.stages] == ["voters", "judge"]
    assert r.consensus.tie_break == "judge frontier chose among 2 tied groups"
    assert r.model == "flash-b" and correct_core(MEDIUM) in r.content
    assert r.consensus.judge.rationale and sorted(r.consensus.judge.presented_order) == [
        "flash",
        "flash-b",
    ]


async def test_observed_agreement_weights_later_votes() -> None:
    data = _judge_config(
        weighting="observed", accuracy_window=4, accuracy_min_samples=2, early_exit=False
    )
    async with running_server(parse_config(data)) as (_, client):
        hints = _hints(pb.STRATEGY_CONSENSUS_MAJORITY)
        before = (await client.plan(MEDIUM, hints=hints)).plan
        for _ in range(2):
            await client.route(MEDIUM, hints=hints)
        after = (await client.plan(MEDIUM, hints=hints)).plan
    assert {c.model: c.weight for c in before.stages[0].candidates} == {
        "flash": 1.0,
        "flash-b": 1.0,
        "mid": 1.0,
    }
    weights = {c.model: c.weight for c in after.stages[0].candidates}
    assert weights["flash"] < 0.1 and weights["flash-b"] == weights["mid"] == 1.0
    assert any(r.code == "OBSERVED_WEIGHTS" for r in after.reasons)
