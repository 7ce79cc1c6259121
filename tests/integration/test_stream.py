"""RouteStream over a real channel: event order, failover, interruption, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from quorum.client import QuorumError, build_request
from quorum.route.v1 import route_service_pb2 as svc
from quorum.route.v1 import route_service_pb2_grpc as svc_grpc
from quorum.route.v1 import types_pb2 as pb
from quorum.server.config import parse_config
from quorum.server.domain import BreakerState
from quorum.server.execute import stream as stream_module
from quorum.server.execute.events import Event
from quorum.server.execute.stream import EventQueue
from quorum.server.observability.metrics import sample_value
from tests.conftest import running_server, sim_config, with_model
from tests.fakes import openai_server
from tests.fakes.common import OK_TEXT, Behaviour, Running
from tests.faults.upstreams import collect, config, hints, kinds, outcomes, provider, text_of


@pytest.fixture
async def oa() -> AsyncIterator[Running]:
    async with openai_server.serve() as running:
        yield running


async def test_events_in_order_and_final_is_the_unary_account() -> None:
    async with running_server(parse_config(sim_config())) as (_, client):
        events = await collect(client, "What is 17 * 23?", request_id="s-1")
        unary = await client.route("What is 17 * 23?", request_id="u-1")
    order = kinds(events)
    assert order[0] == "plan" and order[1] == "attempt_started" and order[-1] == "final"
    assert set(order[2:-1]) == {"chunk"}
    final = events[-1].final
    assert final.request_id == "s-1"
    assert text_of(events) == final.content == unary.content
    assert (final.model, final.strategy) == (unary.model, unary.strategy)
    assert events[0].plan == final.plan
    assert outcomes(final.attempts) == outcomes(unary.attempts) == [("flash", "SUCCEEDED")]
    assert final.usage.output_tokens > 0 and final.cost_usd > 0


async def test_invalid_request_is_a_status_not_an_event() -> None:
    async with running_server(parse_config(sim_config())) as (_, client):
        with pytest.raises(QuorumError) as info:
            await collect(client, "hi", hints=pb.RoutingHints(tier="gold"))
        assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.field_violations[0].field == "request.hints.tier"
        with pytest.raises(QuorumError) as info:
            await collect(
                client, "hi", hints=pb.RoutingHints(sensitivity=pb.SENSITIVITY_RESTRICTED)
            )
        assert info.value.code is grpc.StatusCode.FAILED_PRECONDITION


async def test_failure_after_the_plan_is_an_error_event_with_attempts() -> None:
    data = sim_config()
    for name in data["models"]:
        data = with_model(data, name, simulated={"failure_rate": 1.0})
    async with running_server(parse_config(data)) as (_, client):
        events = await collect(client, "hello")
    assert kinds(events)[0] == "plan" and kinds(events)[-1] == "error"
    error = events[-1].error
    assert (error.code, error.reason) == ("UNAVAILABLE", "ALL_ATTEMPTS_FAILED")
    assert [a.model for a in error.attempts] == ["flash", "flash-b", "mid"]
    assert kinds(events).count("attempt_started") == 3


async def test_break_before_the_first_chunk_fails_over_silently(oa: Running) -> None:
    cfg = config(
        {"oa": provider(oa.base_url)},
        [("bad", "oa", "drop"), ("worse", "oa", "malformed"), ("good", "oa", "ok")],
    )
    async with running_server(cfg) as (_, client):
        events = await collect(client)
    order = kinds(events)
    assert "fallback" not in order and "error" not in order
    started = [e.attempt_started.model for e in events if e.HasField("attempt_started")]
    assert started == ["bad", "worse", "good"]
    assert order.index("chunk") > max(i for i, k in enumerate(order) if k == "attempt_started")
    assert text_of(events) == OK_TEXT
    final = events[-1].final
    assert outcomes(final.attempts) == [
        ("bad", "FAILED"),
        ("worse", "FAILED"),
        ("good", "SUCCEEDED"),
    ]
    assert final.attempts[1].error_reason == "PROVIDER_BAD_RESPONSE"


@pytest.mark.parametrize("fault", ["drop-mid-stream", "truncated-stream", "error-mid-stream"])
async def test_break_mid_stream_restarts_with_a_fallback_event(oa: Running, fault: str) -> None:
    cfg = config({"oa": provider(oa.base_url)}, [("first", "oa", fault), ("second", "oa", "ok")])
    async with running_server(cfg) as (_, client):
        events = await collect(client)
    order = kinds(events)
    assert order.count("fallback") == 1 and order[-1] == "final"
    fallback = events[order.index("fallback")].fallback
    assert (fallback.from_model, fallback.to_model) == ("first", "second")
    assert fallback.discarded_prefix_chars > 0
    before = "".join(e.chunk.text for e in events[: order.index("fallback")] if e.HasField("chunk"))
    assert fallback.discarded_prefix_chars == len(before)
    assert text_of(events) == events[-1].final.content == OK_TEXT
    failed, ok = events[-1].final.attempts
    assert (failed.outcome, ok.outcome) == (pb.ATTEMPT_OUTCOME_FAILED, pb.ATTEMPT_OUTCOME_SUCCEEDED)
    assert "stream broke after" in failed.reason
    assert failed.usage.output_tokens > 0  # what was streamed is accounted for


async def test_break_mid_stream_without_restart_ends_with_an_error(oa: Running) -> None:
    cfg = config(
        {"oa": provider(oa.base_url)},
        {
            "first": {"provider": "oa", "model_id": "drop-mid-stream", "stream_failover": "error"},
            "second": {"provider": "oa", "model_id": "ok"},
        },
    )
    async with running_server(cfg) as (running, client):
        events = await collect(client)
        # The call ends with status OK after the error event; the metric counts the failure.
        labels = {"tenant": "_anonymous", "strategy": "single", "model": "", "code": "UNAVAILABLE"}
        assert sample_value(running.router.metrics, "quorum_requests_total", labels) == 1
    order = kinds(events)
    assert "chunk" in order and "fallback" not in order and order[-1] == "error"
    error = events[-1].error
    assert (error.code, error.reason) == ("UNAVAILABLE", "STREAM_INTERRUPTED")
    assert "broke after" in error.message
    assert [a.model for a in error.attempts] == ["first"]


async def test_no_candidate_left_after_a_break_is_an_error_not_a_truncation(oa: Running) -> None:
    cfg = config({"oa": provider(oa.base_url)}, [("only", "oa", "truncated-stream")])
    async with running_server(cfg) as (_, client):
        events = await collect(client)
    assert kinds(events)[-1] == "error"
    assert events[-1].error.reason == "STREAM_INTERRUPTED"


async def test_leaving_the_stream_cancels_the_upstream_request(oa: Running) -> None:
    cfg = config({"oa": provider(oa.base_url)}, [("slow", "oa", "drip-50")])
    async with running_server(cfg) as (running, _):
        seen = []
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            call = svc_grpc.RouteServiceStub(channel).RouteStream(
                svc.RouteStreamRequest(request=build_request("Hello there")), timeout=10
            )
            async for event in call:
                seen.append(event.WhichOneof("event"))
                if seen[-1] == "chunk":
                    break
            call.cancel()  # the caller goes away mid-answer
        stats = oa.server.stats
        for _ in range(100):
            if stats.client_disconnects:
                break
            await asyncio.sleep(0.02)
        assert stats.client_disconnects == 1 and stats.completed == 0
        assert running.router.breakers.health("oa").failure_count == 0  # not a provider fault
    assert seen == ["plan", "attempt_started", "chunk"]


async def test_streams_left_at_any_point_cancel_their_upstream_requests(oa: Running) -> None:
    # Callers leave after the plan, after the attempt started, or after a chunk, many at
    # once: each upstream request is cut at once, none runs on to its end.
    cfg = config({"oa": provider(oa.base_url)}, [("slow", "oa", "drip-100")])
    async with running_server(cfg) as (running, _):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = svc_grpc.RouteServiceStub(channel)

            async def leave_after(n: int) -> None:
                call = stub.RouteStream(
                    svc.RouteStreamRequest(request=build_request("Hello there")), timeout=20
                )
                seen = 0
                async for _ in call:
                    seen += 1
                    if seen == n:
                        break
                call.cancel()

            await asyncio.gather(*(leave_after(1 + i % 3) for i in range(12)))
        stats = oa.server.stats
        for _ in range(100):
            if stats.client_disconnects + stats.completed >= stats.requests:
                break
            await asyncio.sleep(0.02)
        assert stats.completed == 0  # no upstream answer ran on to its end
        assert stats.client_disconnects == stats.requests


async def test_deadline_mid_stream_is_deadline_exceeded(oa: Running) -> None:
    # Words come 250 ms apart (the whole answer takes about 2.5 s), the deadline is 1.2 s: a
    # few words arrive first, even on a slow machine whose first request starts late.
    cfg = config({"oa": provider(oa.base_url)}, [("slow", "oa", "drip-250")])
    async with running_server(cfg) as (_, client):
        events: list[svc.RouteStreamResponse] = []
        try:
            async for event in client.route_stream("Hello there", timeout=1.2):
                events.append(event)
        except QuorumError as exc:
            code = exc.code.name  # the caller's deadline passed first
        else:
            assert kinds(events)[-1] == "error"  # the server's copy of it passed first
            code = events[-1].error.code
    assert code == "DEADLINE_EXCEEDED"
    assert "chunk" in kinds(events) and "final" not in kinds(events)


async def test_tool_calls_stream_as_chunks(oa: Running) -> None:
    cfg = config({"oa": provider(oa.base_url)}, [("tooly", "oa", "tools")])
    params = pb.GenerationParams(tools=[pb.Tool(name="weather", parameters_json="{}")])
    async with running_server(cfg) as (_, client):
        events = await collect(client, params=params, hints=hints("tooly"))
    calls = [
        e.chunk.tool_call for e in events if e.HasField("chunk") and e.chunk.HasField("tool_call")
    ]
    assert [c.name for c in calls] == ["weather"]
    assert list(events[-1].final.tool_calls) == calls


async def test_cascade_sends_chunks_only_after_the_gate_passed() -> None:
    refuses = {"skill": {"low": 0.0, "medium": 0.0, "high": 0.0}, "refusal_share": 1.0}
    data = with_model(sim_config(), "flash", simulated=refuses)
    async with running_server(parse_config(data)) as (_, client):
        events = await collect(
            client, "What is 17 * 23?", hints=pb.RoutingHints(strategy=pb.STRATEGY_CASCADE)
        )
    order = kinds(events)
    assert order[0] == "plan" and order[-1] == "final"
    assert order.index("escalation") < order.index("chunk")
    gates = [e.gate for e in events if e.HasField("gate")]
    assert [g.verdict.passed for g in gates] == [False, True]
    last_gate = max(i for i, k in enumerate(order) if k == "gate")
    assert all(i > last_gate for i, k in enumerate(order) if k == "chunk")
    chunks = [e.chunk for e in events if e.HasField("chunk")]
    assert {c.model for c in chunks} == {gates[-1].model}  # the rejected tier never streamed
    assert text_of(events) == events[-1].final.content


async def test_consensus_streams_votes_then_the_winning_answer() -> None:
    async with running_server(parse_config(sim_config())) as (_, client):
        events = await collect(
            client,
            "What is 17 * 23?",
            hints=pb.RoutingHints(strategy=pb.STRATEGY_CONSENSUS_MAJORITY),
        )
    order = kinds(events)
    assert order[0] == "plan" and order[-1] == "final"
    assert order.count("vote") >= 2
    assert max(i for i, k in enumerate(order) if k == "vote") < order.index("chunk")
    assert text_of(events) == events[-1].final.content
    assert events[-1].final.consensus.answers


async def test_a_fenced_json_answer_is_unfenced_in_the_final_account(oa: Running) -> None:
    # The chunks go out as the model wrote them; the account is the unary one.
    cfg = config(
        {"oa": provider(oa.base_url)},
        [("fenced", "oa", "json-fenced")],
        capabilities=("streaming", "json_mode"),
    )
    params = pb.GenerationParams(
        response_format=pb.ResponseFormat(type=pb.RESPONSE_FORMAT_TYPE_JSON_OBJECT)
    )
    async with running_server(cfg) as (_, client):
        events = await collect(client, params=params)
        unary = await client.route("Hello there", params=params)
    assert text_of(events).startswith("```json")
    assert events[-1].final.content == unary.content
    assert unary.content.startswith("{") and unary.content.endswith("}")


async def test_a_provider_that_hangs_opens_its_breaker_for_streams_too(
    oa: Running,
) -> None:
    # Streams record how soon each deployment starts answering, so a first chunk that
    # never comes within many times that is the provider's fault, not the caller's haste.
    second = openai_server.serve()
    async with second as oa2:
        cfg = config(
            {
                "oa": provider(oa.base_url, breaker={"fail_max": 2, "reset_timeout_s": 30}),
                "oa2": provider(oa2.base_url),
            },
            [("m", "oa", "ok"), ("n", "oa2", "ok")],
        )
        async with running_server(cfg) as (running, client):
            for _ in range(10):
                await collect(client)
            oa.server.script.extend([Behaviour.parse("slow-3000")] * 4)
            for _ in range(3):
                with contextlib.suppress(QuorumError):
                    await collect(client, timeout=0.6)
            health = running.router.breakers.health("oa")
    assert health.state is BreakerState.OPEN


# A caller that reads slowly: no BDP probing, so its window stays at HTTP/2's default
# 64 KiB and fills after a few thousand small events.
SLOW_READER = [("grpc.http2.bdp_probe", 0)]
STORY = svc.RouteStreamRequest(
    request=build_request("Tell me a long story", hints=pb.RoutingHints(model="flash"))
)


def _story_config(tokens: int) -> dict[str, Any]:
    """The simulated config whose ``flash`` answers with about ``tokens`` tokens."""
    return with_model(sim_config(), "flash", simulated={"output_tokens": tokens})


async def test_a_caller_that_stops_reading_stops_the_upstream_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Once the caller's flow-control window is full, gRPC stops taking messages: the
    # server must then stop reading the upstream too, not pile the answer up in memory.
    emitted = 0
    emit = EventQueue.emit

    def counting(self: EventQueue, event: Event) -> None:
        nonlocal emitted
        emitted += 1
        emit(self, event)

    monkeypatch.setattr(EventQueue, "emit", counting)
    monkeypatch.setattr(stream_module, "STREAM_BACKLOG", 64)  # a smaller answer shows it
    async with running_server(parse_config(_story_config(40_000))) as (running, _):
        address = f"127.0.0.1:{running.port}"
        async with grpc.aio.insecure_channel(address, SLOW_READER) as channel:
            call = svc_grpc.RouteServiceStub(channel).RouteStream(STORY, timeout=30)
            await call.read()
            held = -1
            while held != emitted:  # until the producer is held
                held = emitted
                await asyncio.sleep(0.2)
            events: list[svc.RouteStreamResponse] = []
            while isinstance(event := await call.read(), svc.RouteStreamResponse):
                events.append(event)
    chunks = sum(event.WhichOneof("event") == "chunk" for event in events)
    assert held < chunks / 2  # not the whole answer
    assert events[-1].WhichOneof("event") == "final" and emitted == chunks + 2


async def test_a_caller_that_stops_reading_frees_its_admission_place_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The work ends at the server's deadline (the caller set none), but the error event
    # then waits behind the unread answer: the place must be free for others by then.
    monkeypatch.setattr(stream_module, "STREAM_BACKLOG", 64)
    data = _story_config(40_000)
    data["server"] = {"default_deadline_s": 1.0}
    data["admission"] = {"max_inflight": 1, "retry_after_s": 0.1}
    async with running_server(parse_config(data)) as (running, client):
        address = f"127.0.0.1:{running.port}"
        async with grpc.aio.insecure_channel(address, SLOW_READER) as channel:
            held = svc_grpc.RouteServiceStub(channel).RouteStream(STORY)  # no deadline
            await held.read()
            with pytest.raises(QuorumError) as refused:
                await client.route("hi")
            assert refused.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
            await asyncio.sleep(1.5)  # past the server's deadline; still not reading
            assert (await client.route("hi")).content
            held.cancel()


async def test_a_caller_that_stops_reading_an_ordinary_answer_frees_the_provider() -> None:
    # A pause keeps the provider's call open (its concurrency permit): an answer that fits
    # the backlog is read to its end whatever the caller does, so others get the model.
    data = _story_config(16_000)
    data["providers"]["sim"]["limits"] = {"max_concurrency": 1, "max_queue_wait_s": 0.5}
    async with running_server(parse_config(data)) as (running, client):
        address = f"127.0.0.1:{running.port}"
        async with grpc.aio.insecure_channel(address, SLOW_READER) as channel:
            held = svc_grpc.RouteServiceStub(channel).RouteStream(STORY, timeout=20)
            await held.read()
            await asyncio.sleep(0.3)  # the caller reads nothing more
            routed = await client.route("hi", hints=pb.RoutingHints(model="flash"))
            assert routed.model == "flash"
            assert [a.model for a in routed.attempts] == ["flash"]
            held.cancel()
