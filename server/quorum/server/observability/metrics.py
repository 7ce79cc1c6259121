"""Prometheus metrics: one registry per server, label children bound once.

Names and labels (docs/deploy.md's alerts use them):

==========================================  =========================================
``quorum_requests_total``                   tenant, strategy, model, code — every
                                            Route/RouteStream RPC by final status
``quorum_request_duration_seconds``         stage: classify, plan, execute, total,
                                            attempt
``quorum_upstream_attempts_total``          provider, model, outcome
``quorum_upstream_duration_seconds``        provider, model (per-model percentiles)
``quorum_tokens_total``                     model, direction (input, output)
``quorum_cost_usd_total``                   tenant, model
``quorum_baseline_cost_usd_total``          tenant — the premium model's price for the
                                            same answers (the saving's reference)
``quorum_breaker_state``                    provider: 0 closed, 1 half-open, 2 open —
                                            read from the breakers at scrape time
``quorum_cascade_escalations_total``        route (agent/first tier, the planner's key)
``quorum_cascade_requests_total``           route — cascades answered, so that
                                            escalations / requests is each route's rate
``quorum_consensus_agreement``              histogram of the winning share
``quorum_budget_used_ratio``                tenant (``_global`` for all), period
``quorum_budget_limit_usd``                 tenant, period
``quorum_inflight_requests``                requests being served
``quorum_queue_delay_seconds``              how long a call waits in gRPC core before the
                                            server takes it (the shedder's probe; the
                                            queue's depth in time), read at scrape time
``quorum_shed_share``                       share of new requests being shed now
``quorum_shed_total``                       reason
``quorum_cache_hits_total``                 tenant
==========================================  =========================================

Label values come from config (tenants, models, providers, tiers) or small enums, so
cardinality is bounded; a caller can never create a label value. The families written
per request are :mod:`quorum.server.observability.tallies`, so recording costs a dict update.
``quorum_breaker_state`` costs nothing per request: each scrape reads every breaker's
effective state (:meth:`Metrics.track_breakers`), so an open breaker whose reset timeout
has passed shows half-open (1) even when no call has probed it yet.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Gauge, start_http_server
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from quorum.server.domain import Attempt, BreakerState, RouteResult
from quorum.server.errors import ListenError
from quorum.server.observability.tallies import Tallies
from quorum.server.state import route_key

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip
_RATIO_BUCKETS = (0.2, 0.34, 0.4, 0.5, 0.6, 0.67, 0.75, 0.8, 0.9, 1.0)
BREAKER_VALUES = {
    BreakerState.CLOSED: 0,
    BreakerState.COOLING_DOWN: 0,
    BreakerState.HALF_OPEN: 1,
    BreakerState.OPEN: 2,
}

_CLASSIFY, _PLAN, _EXECUTE, _ATTEMPT = ("classify",), ("plan",), ("execute",), ("attempt",)
_BREAKER_HELP = "Circuit breaker per provider: 0 closed, 1 half-open, 2 open"

BreakerStates = Callable[[], Mapping[str, BreakerState]]


class _BreakerGauge(Collector):
    """``quorum_breaker_state``, evaluated when Prometheus scrapes: the states set with
    :meth:`Metrics.breaker`, overridden by what the tracked reader returns then.

    The reader runs on the scrape thread, so it must only read (see
    :meth:`~quorum.server.resilience.breakers.Breakers.states`)."""

    def __init__(self) -> None:
        self.read: BreakerStates | None = None
        self.fixed: dict[str, BreakerState] = {}

    def collect(self) -> Iterator[Metric]:
        states = dict(self.fixed)
        if self.read is not None:
            states.update(self.read())
        family = GaugeMetricFamily("quorum_breaker_state", _BREAKER_HELP, labels=["provider"])
        for provider, state in states.items():
            family.add_metric([provider], BREAKER_VALUES[state])
        yield family

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("quorum_breaker_state", _BREAKER_HELP, labels=["provider"])


@dataclass(slots=True)
class RequestRecord:
    """What one RPC's ``quorum_requests_total`` sample is labelled with, filled in as the
    request goes (the interceptor sets the code, the router the rest)."""

    tenant: str = ""
    strategy: str = ""
    model: str = ""
    # A stream that failed after it started ends with status OK and an error event:
    # that event's code, so the sample counts the failure it was.
    failed_code: str = ""


_record: ContextVar[RequestRecord | None] = ContextVar("quorum_request_record", default=None)


def current_record() -> RequestRecord | None:
    """The record of the RPC being served, if an interceptor opened one."""
    return _record.get()


def open_record() -> tuple[RequestRecord, Token[RequestRecord | None]]:
    """Start a record for this context; pass the token to :func:`close_record`."""
    record = RequestRecord()
    return record, _record.set(record)


def close_record(token: Token[RequestRecord | None]) -> None:
    # An abandoned stream is closed from another context, where reset cannot work.
    # (try/except, not contextlib.suppress: that is three Python calls on every RPC.)
    try:  # noqa: SIM105
        _record.reset(token)
    except ValueError:
        pass


def route_label(result: RouteResult) -> str:
    """The route a cascade's escalations are counted under: the planner's key for it
    (agent and first tier, :func:`~quorum.server.state.route_key`), so the metric and
    the escalation guard talk about the same routes."""
    tiers = result.cascade.tiers_tried if result.cascade is not None else ()
    return route_key(result.classification.agent, tiers[0] if tiers else "")


class Metrics:
    """Every Quorum metric, in its own registry (several servers may share a process).

    The families written on every request are :mod:`quorum.server.observability.tallies` (a dict
    update each); gauges set now and then stay ``prometheus_client`` gauges."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        t = Tallies()
        self._requests = t.counter(
            "quorum_requests_total",
            "Route and RouteStream RPCs by tenant, strategy, answering model and status code",
            ["tenant", "strategy", "model", "code"],
        )
        self._stage = t.histogram(
            "quorum_request_duration_seconds",
            "Time per stage of the request path (classify, plan, execute, total, attempt)",
            ["stage"],
            _LATENCY_BUCKETS,
        )
        self._attempts = t.counter(
            "quorum_upstream_attempts_total",
            "Upstream calls by provider, model and outcome",
            ["provider", "model", "outcome"],
        )
        self._upstream = t.histogram(
            "quorum_upstream_duration_seconds",
            "Latency of upstream calls by provider and model",
            ["provider", "model"],
            _LATENCY_BUCKETS,
        )
        self._tokens = t.counter(
            "quorum_tokens_total", "Tokens by model and direction", ["model", "direction"]
        )
        self._cost = t.counter(
            "quorum_cost_usd_total", "Spend in USD by tenant and model", ["tenant", "model"]
        )
        self._baseline = t.counter(
            "quorum_baseline_cost_usd_total",
            "What the premium baseline model would have cost for the same answers, in USD",
            ["tenant"],
        )
        self._escalations = t.counter(
            "quorum_cascade_escalations_total",
            "Cascade escalations to a more capable tier, by route",
            ["route"],
        )
        self._cascades = t.counter(
            "quorum_cascade_requests_total",
            "Cascades answered, by route (escalations / cascades is the route's rate)",
            ["route"],
        )
        self._agreement = t.histogram(
            "quorum_consensus_agreement",
            "Share of consensus weight behind the winning answer",
            [],
            _RATIO_BUCKETS,
        )
        self._agreement.touch(())
        self._shed = t.counter(
            "quorum_shed_total", "Requests refused by load shedding, by reason", ["reason"]
        )
        self._cache_hits = t.counter(
            "quorum_cache_hits_total", "Answers served from the response cache", ["tenant"]
        )
        for stage in ("classify", "plan", "execute", "total", "attempt"):
            self._stage.touch((stage,))  # every stage shows from the start
        r.register(t)
        self._breakers = _BreakerGauge()
        r.register(self._breakers)
        self._budget_ratio = Gauge(
            "quorum_budget_used_ratio",
            "Budget used (spent plus reserved) over its limit, by tenant and period",
            ["tenant", "period"],
            registry=r,
        )
        self._budget_limit = Gauge(
            "quorum_budget_limit_usd", "Budget limit in USD", ["tenant", "period"], registry=r
        )
        self.inflight = Gauge("quorum_inflight_requests", "Requests being served now", registry=r)
        self.queue_delay = Gauge(
            "quorum_queue_delay_seconds",
            "Standing delay of calls queued in gRPC core before the server takes them "
            "(0 with admission.max_queue_delay_ms off)",
            registry=r,
        )
        self.shed_share = Gauge(
            "quorum_shed_share", "Share of new requests load shedding refuses now", registry=r
        )

    def track_inflight(self, read: Callable[[], float]) -> None:
        """Report ``read()`` as the requests in flight, read when Prometheus scrapes."""
        self.inflight.set_function(read)

    def track_queue(self, delay_s: Callable[[], float], share: Callable[[], float]) -> None:
        """Report the load shedder's standing queueing delay and share, read at scrape time."""
        self.queue_delay.set_function(delay_s)
        self.shed_share.set_function(share)

    # ---- recording ------------------------------------------------------------------

    def request(self, tenant: str, strategy: str, model: str, code: str) -> None:
        self._requests.inc((tenant, strategy, model, code))

    def stage(self, stage: str, seconds: float) -> None:
        self._stage.observe((stage,), seconds)

    def attempts(self, tenant: str, attempts: Iterable[Attempt]) -> None:
        """Count upstream attempts, their latency, tokens and cost."""
        for a in attempts:
            self._attempts.inc((a.provider, a.model, a.outcome.value))
            if a.latency_ms > 0:
                seconds = a.latency_ms / 1000.0
                self._upstream.observe((a.provider, a.model), seconds)
                self._stage.observe(_ATTEMPT, seconds)
            usage = a.usage
            if usage.input_tokens:
                self._tokens.inc((a.model, "input"), usage.input_tokens)
            if usage.output_tokens:
                self._tokens.inc((a.model, "output"), usage.output_tokens)
            if a.cost_usd:
                self._cost.inc((tenant, a.model), a.cost_usd)

    def result(self, tenant: str, result: RouteResult) -> None:
        """Everything a finished route tells (its attempts are counted separately)."""
        t = result.timings
        stage = self._stage
        stage.observe(_CLASSIFY, t.classify_ms / 1000.0)
        stage.observe(_PLAN, t.plan_ms / 1000.0)
        stage.observe(_EXECUTE, t.execute_ms / 1000.0)
        self._baseline.inc((tenant,), result.baseline_cost_usd)
        cascade = result.cascade
        if cascade is not None:
            route = (route_label(result),)
            self._cascades.inc(route)
            if len(cascade.tiers_tried) > 1:
                self._escalations.inc(route, len(cascade.tiers_tried) - 1)
        if result.consensus is not None:
            self._agreement.observe((), result.consensus.agreement)

    def cache_hit(self, tenant: str, result: RouteResult) -> None:
        self._cache_hits.inc((tenant,))
        self._baseline.inc((tenant,), result.baseline_cost_usd)

    def shed(self, reason: str) -> None:
        self._shed.inc((reason,))

    def budget(self, tenant: str, period: str, ratio: float, limit_usd: float) -> None:
        self._budget_ratio.labels(tenant, period).set(ratio)
        self._budget_limit.labels(tenant, period).set(limit_usd)

    def track_breakers(self, read: BreakerStates) -> None:
        """Export ``read()`` (breaker key → state) as ``quorum_breaker_state``, read when
        Prometheus scrapes, from the scrape thread: pass a reader that only reads, such
        as :meth:`Breakers.states <quorum.server.resilience.breakers.Breakers.states>`.
        A breaker's state is then what it is at scrape time (half-open once its reset
        timeout has passed), not what the last call through it left behind."""
        self._breakers.read = read

    def breaker(self, provider: str, state: BreakerState) -> None:
        """Set one breaker's exported state (a tracked reader's value wins)."""
        self._breakers.fixed[provider] = state


@dataclass
class MetricsServer:
    """The ``/metrics`` HTTP endpoint, served from a daemon thread."""

    httpd: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.httpd.server_port)

    async def stop(self) -> None:
        await asyncio.to_thread(self.httpd.shutdown)
        self.httpd.server_close()


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` into host and port; an empty host means every one."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def serve_metrics(metrics: Metrics, address: str) -> MetricsServer:
    """Serve ``metrics`` at ``http://address/metrics`` (any path answers the same)."""
    try:
        host, port = split_address(address)
        httpd, thread = start_http_server(port, host, registry=metrics.registry)
    except (OSError, OverflowError, ValueError) as exc:  # in use, out of range, unusable
        raise ListenError(
            "observability.metrics_address", f"cannot listen on {address}: {exc}"
        ) from None
    return MetricsServer(httpd, thread)


def sample_value(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    """The current value of one sample (for tests and ``quorum stats`` self-checks)."""
    value: Any = metrics.registry.get_sample_value(name, labels or {})
    return float(value or 0.0)
