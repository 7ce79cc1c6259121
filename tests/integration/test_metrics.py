"""Prometheus metrics over HTTP, ``quorum stats`` against them, and OpenTelemetry spans."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
import structlog
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from quorum.client import AsyncQuorumClient, QuorumError
from quorum.route.v1 import types_pb2 as pb
from quorum.server.app import create_server
from quorum.server.config import TracingConfig, parse_config
from quorum.server.domain import (
    Attempt,
    AttemptOutcome,
    Classification,
    Completion,
    Difficulty,
    ExecutionPlan,
    RouteResult,
    StageTimings,
    Strategy,
    Usage,
)
from quorum.server.observability.metrics import Metrics, sample_value
from quorum.server.observability.tracing import Tracing
from quorum.server.router import Router
from quorum.server.stats import quantile, summarize
from tests.conftest import sim_config, with_model

QUORUM = Path(sys.executable).with_name("quorum")


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): float(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_endpoint_and_stats_cli() -> None:
    data = with_model(sim_config(), "flash", simulated={"failure_rate": 1.0})
    data["providers"]["sim"]["breaker"] = {"fail_max": 2, "reset_timeout_s": 60}
    running = create_server(parse_config(data), "127.0.0.1:0", metrics_address="127.0.0.1:0")
    assert running.metrics is not None
    await running.start()
    try:
        async with AsyncQuorumClient(f"127.0.0.1:{running.port}", timeout=10) as client:
            for _ in range(3):
                await client.route("hello")
            await client.plan("hello")
            with pytest.raises(QuorumError):
                await client.route("")  # invalid: refused before its request is read
        samples = scrape(running.metrics.port)
        # With authentication off and no tenants, even a refused request is known to
        # be the anonymous tenant's.
        refused = ("quorum_requests_total", (("code", "INVALID_ARGUMENT"), ("model", ""),
                   ("strategy", ""), ("tenant", "_anonymous")))  # fmt: skip
        assert samples[refused] == 1
        ok = ("quorum_requests_total", (("code", "OK"), ("model", "flash-b"),
              ("strategy", "single"), ("tenant", "_anonymous")))  # fmt: skip
        assert samples[ok] == 3
        failed = ("quorum_upstream_attempts_total",
                  (("model", "flash"), ("outcome", "failed"), ("provider", "sim")))  # fmt: skip
        assert samples[failed] == 2  # then the breaker opened and flash went last
        answered = ("quorum_upstream_attempts_total",
                    (("model", "flash-b"), ("outcome", "succeeded"),
                     ("provider", "sim-b")))  # fmt: skip
        assert samples[answered] == 3
        assert samples[("quorum_breaker_state", (("provider", "sim"),))] == 2
        assert samples[("quorum_breaker_state", (("provider", "sim-b"),))] == 0
        assert samples[("quorum_tokens_total", (("direction", "output"), ("model", "flash-b")))] > 0
        cost = samples[("quorum_cost_usd_total", (("model", "flash-b"), ("tenant", "_anonymous")))]
        baseline = samples[("quorum_baseline_cost_usd_total", (("tenant", "_anonymous"),))]
        assert 0 < cost < baseline
        for stage, count in (("classify", 3), ("plan", 3), ("execute", 3), ("total", 4)):
            key = ("quorum_request_duration_seconds_count", (("stage", stage),))
            assert samples[key] == count  # "total" counts the refused request too
        assert samples[("quorum_inflight_requests", ())] == 0
        assert 0 <= samples[("quorum_queue_delay_seconds", ())] < 5  # the probe's reading
        assert samples[("quorum_shed_share", ())] == 0
        result = await asyncio.to_thread(
            subprocess.run,
            [str(QUORUM), "stats", "--metrics-address", f"127.0.0.1:{running.metrics.port}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        out = result.stdout
        assert "requests  4 (3 ok, INVALID_ARGUMENT 1)" in out
        assert "breakers  sim open, sim-b closed" in out
        flash_row = next(line for line in out.splitlines() if line.startswith("flash "))
        assert flash_row.split()[1:3] == ["2", "2"]  # calls, errors
    finally:
        await running.drain(0.5)


def test_stats_cli_names_an_unreachable_endpoint() -> None:
    result = subprocess.run(
        [str(QUORUM), "stats", "--metrics-address", "127.0.0.1:9", "--timeout", "2"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "cannot read http://127.0.0.1:9/metrics" in result.stderr


def test_quantile_interpolates_like_promql() -> None:
    buckets = [(0.1, 10.0), (0.2, 20.0), (0.5, 20.0), (float("inf"), 20.0)]
    assert quantile(0.5, buckets) == 0.1
    assert quantile(0.75, buckets) == 0.15000000000000002
    assert quantile(0.5, []) is None
    stats = summarize(
        'quorum_breaker_state{provider="a"} 1\nquorum_inflight_requests 4\n'
        'quorum_cascade_escalations_total{route="code/cheap"} 3\n'
        'quorum_requests_total{tenant="t",strategy="cascade",model="m",code="OK"} 6\n'
    )
    assert stats.breakers == {"a": "half-open"}
    assert stats.inflight == 4
    assert stats.escalations == {"code/cheap": 3} and stats.cascade_requests == 6


async def test_tracing_spans_per_rpc_and_attempt_with_ids_in_logs() -> None:
    exporter = InMemorySpanExporter()
    config = parse_config(with_model(sim_config(), "flash", simulated={"failure_rate": 1.0}))
    tracing = Tracing.create(
        TracingConfig(otlp_endpoint="http://127.0.0.1:4317", sample_ratio=1.0),
        exporter=exporter,
        batch=False,
    )
    router = Router(config, tracing=tracing)
    running = create_server(config, "127.0.0.1:0", router=router)
    await running.start()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = f"00-{trace_id}-00f067aa0ba902b7-01"
    try:
        async with AsyncQuorumClient(
            f"127.0.0.1:{running.port}", metadata=[("traceparent", parent)]
        ) as client:
            with structlog.testing.capture_logs(
                processors=[structlog.contextvars.merge_contextvars]
            ) as logs:
                await client.route("hello")
    finally:
        await running.drain(0.5)
    spans = exporter.get_finished_spans()
    rpc = next(s for s in spans if s.name == "quorum.route.v1.RouteService/Route")
    assert format(rpc.context.trace_id, "032x") == trace_id
    assert rpc.attributes is not None and rpc.attributes["rpc.grpc.status_code"] == "OK"
    attempts = [s for s in spans if s.name.startswith("attempt ")]
    assert [s.name for s in attempts] == ["attempt flash", "attempt flash-b"]
    for span in attempts:
        assert span.parent is not None and span.parent.span_id == rpc.context.span_id
        assert span.start_time is not None and rpc.start_time is not None
        assert rpc.start_time <= span.start_time <= (span.end_time or 0) <= (rpc.end_time or 0)
    assert attempts[0].status.status_code.name == "ERROR"
    routed = [e for e in logs if e["event"] == "routed"]
    assert routed and routed[0]["trace_id"] == trace_id


def _result() -> RouteResult:
    attempts = tuple(
        Attempt("flash", "sim", "cheap", "primary", outcome, "ok", "", 12.0, Usage(100, 50), 2e-5)
        for outcome in (AttemptOutcome.FAILED, AttemptOutcome.SUCCEEDED)
    )
    return RouteResult(
        request_id="r",
        completion=Completion("x", usage=Usage(100, 50)),
        model="flash",
        provider="sim",
        strategy=Strategy.SINGLE,
        classification=Classification("chat", Difficulty.LOW, 0.9, "rules"),
        plan=ExecutionPlan(Strategy.SINGLE, (), 0.0, 0.0, (), 3),
        attempts=attempts,
        usage=Usage(200, 100),
        cost_usd=4e-5,
        baseline_cost_usd=1e-3,
        baseline_model="frontier",
        timings=StageTimings(0.1, 0.1, 12.0, 12.5),
    )


def test_recording_a_request_costs_microseconds() -> None:
    metrics = Metrics()
    result = _result()
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        metrics.attempts("acme", result.attempts)
        metrics.result("acme", result)
        metrics.request("acme", "single", "flash", "OK")
        metrics.stage("total", 0.0125)
    per_request_us = (time.perf_counter() - start) / n * 1e6
    print(f"metrics per request: {per_request_us:.1f} us")
    assert per_request_us < 200


def test_label_values_come_from_config_only() -> None:
    # A caller-chosen status code name is the only free-form value the gateway passes,
    # and it comes from grpc.StatusCode.
    assert {c.name for c in grpc.StatusCode} >= {"OK", "UNAVAILABLE", "RESOURCE_EXHAUSTED"}
    assert pb.STRATEGY_SINGLE  # the strategy label is the domain enum's value


async def test_cascade_escalations_and_consensus_agreement_are_recorded() -> None:
    data = sim_config()
    for name in ("flash", "flash-b"):
        data = with_model(
            data, name, simulated={"skill": {"low": 0, "medium": 0, "high": 0}, "refusal_share": 1}
        )
    running = create_server(parse_config(data), "127.0.0.1:0")
    await running.start()
    try:
        async with AsyncQuorumClient(f"127.0.0.1:{running.port}", timeout=10) as client:
            cascade = pb.RoutingHints(strategy=pb.STRATEGY_CASCADE)
            r = await client.route("What is 17 * 23?", hints=cascade)
            assert r.cascade.tiers_tried[0] == "cheap" and len(r.cascade.tiers_tried) > 1
            vote = pb.RoutingHints(strategy=pb.STRATEGY_CONSENSUS_MAJORITY)
            await client.route("What is 17 * 23?", hints=vote)
    finally:
        await running.drain(0.5)
    metrics = running.router.metrics
    escalations = len(r.cascade.tiers_tried) - 1
    labels = {"route": "/cheap"}
    assert sample_value(metrics, "quorum_cascade_escalations_total", labels) == escalations
    assert sample_value(metrics, "quorum_cascade_requests_total", labels) == 1  # the rate's base
    assert sample_value(metrics, "quorum_consensus_agreement_count") == 1


async def test_a_call_refused_at_admission_is_counted_as_the_anonymous_tenant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("quorum.server.app.LoadShedder", lambda target_s: None)
    data = sim_config(admission={"max_inflight": 1, "retry_after_s": 0.1})
    for name in ("flash", "flash-b", "mid", "frontier"):
        data = with_model(data, name, simulated={"latency_ms_p50": 400, "latency_ms_p95": 400})
    running = create_server(parse_config(data), "127.0.0.1:0", metrics_address="127.0.0.1:0")
    assert running.metrics is not None
    await running.start()
    try:
        async with AsyncQuorumClient(f"127.0.0.1:{running.port}", timeout=10) as client:
            first = asyncio.create_task(client.route("hello"))
            await asyncio.sleep(0.1)
            with pytest.raises(QuorumError) as info:
                await client.route("hello")
            assert info.value.reason == "OVERLOADED"
            await first
        samples = scrape(running.metrics.port)
    finally:
        await running.drain(0.5)
    refused = [
        dict(labels)["tenant"]
        for (name, labels), _ in samples.items()
        if name == "quorum_requests_total" and ("code", "RESOURCE_EXHAUSTED") in labels
    ]
    assert refused == ["_anonymous"]
