"""Tallies expose exactly what prometheus_client's own counters and histograms would."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from quorum.server.observability.tallies import Tallies

BOUNDS = (0.001, 0.01, 0.1, 1.0, 10.0)
OBSERVED = [0.0005, 0.001, 0.002, 0.05, 0.1, 0.7, 3.0, 42.0, 0.01]


def _exposition(registry: CollectorRegistry) -> list[str]:
    text = generate_latest(registry).decode()
    return sorted(line for line in text.splitlines() if "_created" not in line)


def test_counter_and_histogram_match_prometheus_client() -> None:
    ours = CollectorRegistry()
    tallies = Tallies()
    requests = tallies.counter("demo_requests_total", "Requests", ["code"])
    latency = tallies.histogram("demo_seconds", "Latency", ["stage"], BOUNDS)
    latency.touch(("idle",))
    ours.register(tallies)

    theirs = CollectorRegistry()
    counter = Counter("demo_requests_total", "Requests", ["code"], registry=theirs)
    histogram = Histogram("demo_seconds", "Latency", ["stage"], buckets=BOUNDS, registry=theirs)
    histogram.labels("idle")

    for i, value in enumerate(OBSERVED):
        code = "OK" if i % 3 else "UNAVAILABLE"
        requests.inc((code,))
        counter.labels(code).inc()
        latency.observe(("total",), value)
        histogram.labels("total").observe(value)
    requests.inc(("OK",), 2.5)
    counter.labels("OK").inc(2.5)

    assert _exposition(ours) == _exposition(theirs)
    assert ours.get_sample_value("demo_seconds_count", {"stage": "total"}) == len(OBSERVED)
    assert ours.get_sample_value("demo_seconds_bucket", {"stage": "total", "le": "0.01"}) == 4


def test_counters_only_go_up_and_bounds_must_increase() -> None:
    tallies = Tallies()
    counter = tallies.counter("demo_total", "x", [])
    with pytest.raises(ValueError, match="only go up"):
        counter.inc((), -1.0)
    with pytest.raises(ValueError, match="must increase"):
        tallies.histogram("demo_seconds", "x", [], (1.0, 0.5))
