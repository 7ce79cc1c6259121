"""Feedback on earlier decisions, and the decision log that records both."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest

from quorum.client import QuorumError
from quorum.route.v1 import route_service_pb2 as svc
from quorum.route.v1 import types_pb2 as pb
from quorum.server.app import create_server
from quorum.server.config import parse_config
from quorum.server.observed import LocalWindows
from tests.conftest import RedisServer, running_server, sim_config, with_model


async def test_feedback_for_a_routed_request_is_recorded(tmp_path: Path) -> None:
    log_path = tmp_path / "decisions.jsonl"
    data = sim_config(decisions={"sink": "file", "path": str(log_path)})
    async with running_server(parse_config(data)) as (_, client):
        routed = await client.route("What is 2 + 2?", request_id="fb-1")
        reply = await client.feedback(
            svc.FeedbackRequest(request_id="fb-1", kind=svc.FEEDBACK_KIND_SCORE, score=0.75)
        )
        assert reply.recorded
        await client.feedback(
            svc.FeedbackRequest(request_id="fb-1", kind=svc.FEEDBACK_KIND_REGENERATED)
        )
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    decision, score, regen = lines
    assert decision["type"] == "decision"
    assert decision["request_id"] == "fb-1"
    assert decision["model"] == routed.model
    assert decision["attempts"][0]["outcome"] == "succeeded"
    assert "prompt" not in decision  # prompts are not logged unless configured
    assert "2 + 2" not in log_path.read_text()
    assert (score["kind"], score["score"]) == ("score", 0.75)
    assert regen["kind"] == "regenerated"


async def test_an_answer_from_the_cache_is_a_decision_open_to_feedback(tmp_path: Path) -> None:
    log_path = tmp_path / "decisions.jsonl"
    data = sim_config(
        decisions={"sink": "file", "path": str(log_path)},
        cache={"enabled": True, "default_allow": True},
    )
    async with running_server(parse_config(data)) as (running, client):
        await client.route("What is 6 * 7?", request_id="fresh")
        hit = await client.route("What is 6 * 7?", request_id="from-cache")
        assert hit.cached
        reply = await client.feedback(
            svc.FeedbackRequest(request_id="from-cache", kind=svc.FEEDBACK_KIND_THUMBS_DOWN)
        )
        assert reply.recorded
        # One answer, however often served: a verdict on a copy does not teach again.
        quality = running.router.observed.quality
        assert isinstance(quality, LocalWindows) and quality.size == 0
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    decisions = [(d["request_id"], d["cached"]) for d in lines if d["type"] == "decision"]
    assert decisions == [("fresh", False), ("from-cache", True)]


async def test_a_request_that_got_no_answer_is_a_decision_too(tmp_path: Path) -> None:
    log_path = tmp_path / "decisions.jsonl"
    data = with_model(
        sim_config(decisions={"sink": "file", "path": str(log_path)}),
        "mid",
        simulated={"failure_rate": 1.0},
    )
    async with running_server(parse_config(data)) as (_, client):
        with pytest.raises(QuorumError) as info:
            await client.route("hello", request_id="no-answer", hints=pb.RoutingHints(model="mid"))
        assert info.value.code is grpc.StatusCode.UNAVAILABLE
        reply = await client.feedback(
            svc.FeedbackRequest(request_id="no-answer", kind=svc.FEEDBACK_KIND_REGENERATED)
        )
        assert reply.recorded
    decision, feedback = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert (decision["type"], decision["request_id"], decision["model"]) == (
        "decision",
        "no-answer",
        "",
    )
    assert decision["error"] == {"code": "UNAVAILABLE", "reason": "ALL_ATTEMPTS_FAILED"}
    assert decision["attempts"] and all(a["outcome"] == "failed" for a in decision["attempts"])
    assert decision["plan"] and decision["task"]
    assert "prompt" not in decision
    assert (feedback["type"], feedback["kind"]) == ("feedback", "regenerated")


async def test_unknown_request_id_is_not_found() -> None:
    async with running_server(parse_config(sim_config())) as (_, client):
        with pytest.raises(QuorumError) as info:
            await client.feedback(
                svc.FeedbackRequest(request_id="never-seen", kind=svc.FEEDBACK_KIND_THUMBS_UP)
            )
    assert info.value.code is grpc.StatusCode.NOT_FOUND
    assert info.value.reason == "NOT_FOUND"


@pytest.mark.parametrize(
    ("request_msg", "field"),
    [
        (svc.FeedbackRequest(kind=svc.FEEDBACK_KIND_THUMBS_UP), "request_id"),
        (svc.FeedbackRequest(request_id="x"), "kind"),
        (svc.FeedbackRequest(request_id="x", kind=svc.FEEDBACK_KIND_SCORE, score=1.5), "score"),
        (svc.FeedbackRequest(request_id="x", kind=svc.FEEDBACK_KIND_LABEL), "label"),
        (
            svc.FeedbackRequest(request_id="x", kind=svc.FEEDBACK_KIND_THUMBS_UP, label="billing"),
            "label",
        ),
        (
            svc.FeedbackRequest(request_id="x", kind=svc.FEEDBACK_KIND_LABEL, label="bill\x00ing"),
            "label",
        ),
        (svc.FeedbackRequest(request_id="x", kind=svc.FEEDBACK_KIND_LABEL, label="a\nb"), "label"),
        (
            svc.FeedbackRequest(
                request_id="x", kind=svc.FEEDBACK_KIND_THUMBS_UP, comment="c" * 3000
            ),
            "comment",
        ),
    ],
)
async def test_bad_feedback_names_the_field(request_msg: svc.FeedbackRequest, field: str) -> None:
    async with running_server(parse_config(sim_config())) as (_, client):
        with pytest.raises(QuorumError) as info:
            await client.feedback(request_msg)
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert field in [v.field for v in info.value.field_violations]


async def test_prompts_logged_only_when_configured(tmp_path: Path) -> None:
    log_path = tmp_path / "decisions.jsonl"
    data = sim_config(decisions={"sink": "file", "path": str(log_path), "include_prompts": True})
    async with running_server(parse_config(data)) as (_, client):
        await client.route("What is 3 + 4?")
    (decision,) = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert decision["prompt"] == "What is 3 + 4?"


async def test_feedback_reaches_any_replica_through_redis(redis_server: RedisServer) -> None:
    data = sim_config(state={"redis_url": redis_server.url}, decisions={"sink": "redis"})
    config = parse_config(data)
    a = create_server(config, "127.0.0.1:0")
    b = create_server(config, "127.0.0.1:0")
    await a.start()
    await b.start()
    try:
        from quorum.client import AsyncQuorumClient

        async with (
            AsyncQuorumClient(f"127.0.0.1:{a.port}") as ca,
            AsyncQuorumClient(f"127.0.0.1:{b.port}") as cb,
        ):
            await ca.route("hello", request_id="shared-1")
            for _ in range(50):  # the shared index is written off the request path
                try:
                    await cb.feedback(
                        svc.FeedbackRequest(
                            request_id="shared-1", kind=svc.FEEDBACK_KIND_THUMBS_DOWN
                        )
                    )
                    break
                except QuorumError:
                    import asyncio

                    await asyncio.sleep(0.02)
            else:
                pytest.fail("replica b never learned request shared-1")
    finally:
        await a.drain(0.5)
        await b.drain(0.5)
    import redis

    client = redis.Redis.from_url(redis_server.url)
    entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange("quorum:decisions")  # type: ignore[assignment]
    records = [json.loads(fields[b"record"]) for _, fields in entries]
    client.close()
    assert [r["type"] for r in records] == ["decision", "feedback"]


async def test_feedback_teaches_the_planner() -> None:
    data = sim_config()
    data["routing"]["performance"] = {"explore_share": 0.0, "min_samples": 3, "window": 10}
    async with running_server(parse_config(data)) as (running, client):
        for i in range(3):
            r = await client.route("hello there", request_id=f"p-{i}")
            assert r.model == "flash"
            await client.feedback(
                svc.FeedbackRequest(request_id=f"p-{i}", kind=svc.FEEDBACK_KIND_THUMBS_DOWN)
            )
        planned = await client.plan("hello there")
        assert running.router.observed.quality.rates()["flash/chat"] == 0.0
    assert planned.plan.stages[0].candidates[0].model == "flash-b"
    assert any(r.code == "PERFORMANCE" and "flash 0.00" in r.message for r in planned.plan.reasons)


async def test_only_the_first_verdict_on_a_request_teaches() -> None:
    data = sim_config()
    data["routing"]["performance"] = {"explore_share": 0.0, "min_samples": 3, "window": 10}
    async with running_server(parse_config(data)) as (running, client):
        await client.route("hello there", request_id="once")
        down = svc.FeedbackRequest(request_id="once", kind=svc.FEEDBACK_KIND_THUMBS_DOWN)
        for _ in range(20):  # one caller repeating itself cannot steer routing
            assert (await client.feedback(down)).recorded
        planned = await client.plan("hello there")
        rates = running.router.observed.quality.rates()
    assert "flash/chat" not in rates  # one verdict: below min_samples
    assert planned.plan.stages[0].candidates[0].model == "flash"


async def test_a_label_uses_up_no_verdict() -> None:
    data = sim_config()
    data["routing"]["performance"] = {"explore_share": 0.0, "min_samples": 3, "window": 10}
    async with running_server(parse_config(data)) as (running, client):
        for i in range(3):
            await client.route("hello there", request_id=f"l-{i}")
            label = svc.FeedbackRequest(
                request_id=f"l-{i}", kind=svc.FEEDBACK_KIND_LABEL, label="billing"
            )
            down = svc.FeedbackRequest(request_id=f"l-{i}", kind=svc.FEEDBACK_KIND_THUMBS_DOWN)
            assert (await client.feedback(label)).recorded
            assert (await client.feedback(down)).recorded
        rates = running.router.observed.quality.rates()
    assert rates["flash/chat"] == 0.0  # the thumbs down after each label taught


async def test_feedback_while_redis_is_down_is_retryable_not_not_found(
    redis_server: RedisServer,
) -> None:
    # The decision was made on replica a; b can only learn of it through Redis, which it
    # cannot reach: whether the decision exists is unknown, so the caller is told to
    # retry (as for the budget store), never that there is no such decision.
    data = sim_config(state={"redis_url": redis_server.url}, decisions={"sink": "redis"})
    async with (
        running_server(parse_config(data)) as (_, ca),
        running_server(parse_config(data)) as (_, cb),
    ):
        await ca.route("hello", request_id="outage-1")
        await asyncio.sleep(0.2)  # the shared index is written off the request path
        redis_server.stop()
        up = svc.FeedbackRequest(request_id="outage-1", kind=svc.FEEDBACK_KIND_THUMBS_UP)
        with pytest.raises(QuorumError) as info:
            await cb.feedback(up)
    assert info.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.value.reason == "DECISION_STORE_UNAVAILABLE"
    assert info.value.retry_after_s == 1.0
    assert "no decision recorded" not in info.value.message
