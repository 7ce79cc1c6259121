"""``quorum stats``: the live picture from a running server's ``/metrics`` endpoint.

Reads the Prometheus text once and prints, since the server started: requests by
status, per model calls, errors, p50/p99 latency, tokens and cost, the saving against
the premium baseline, cascade escalations per route, consensus agreement, breakers,
budgets, cache hits and load shedding. Percentiles are interpolated within histogram
buckets the way PromQL's ``histogram_quantile`` does.
"""

from __future__ import annotations

import http.client
import json
import math
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

BREAKER_NAMES = {0: "closed", 1: "half-open", 2: "open"}


@dataclass
class ModelStats:
    calls: float = 0.0
    errors: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    input_tokens: float = 0.0
    output_tokens: float = 0.0
    cost_usd: float = 0.0


@dataclass
class Stats:
    requests: dict[str, float] = field(default_factory=dict)  # by code
    requests_by_tenant: dict[str, float] = field(default_factory=dict)
    models: dict[str, ModelStats] = field(default_factory=dict)
    cost_usd: float = 0.0
    baseline_cost_usd: float = 0.0
    escalations: dict[str, float] = field(default_factory=dict)
    cascade_requests: float = 0.0
    agreement_p50: float | None = None
    breakers: dict[str, str] = field(default_factory=dict)
    budgets: dict[str, dict[str, float]] = field(default_factory=dict)
    cache_hits: dict[str, float] = field(default_factory=dict)
    shed: dict[str, float] = field(default_factory=dict)
    inflight: float = 0.0
    total_p50_ms: float | None = None
    total_p99_ms: float | None = None


def metrics_url(address: str) -> str:
    """``HOST:PORT`` or a full URL → the ``/metrics`` URL."""
    if address.startswith(("http://", "https://")):
        return address if address.rstrip("/").endswith("/metrics") else address + "/metrics"
    return f"http://{address}/metrics"


def fetch(address: str, timeout_s: float = 5.0) -> str:
    """The metrics text of the server at ``address``."""
    with urllib.request.urlopen(metrics_url(address), timeout=timeout_s) as response:
        body: bytes = response.read()
    return body.decode("utf-8")


def quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """``histogram_quantile`` over cumulative (upper bound, count) buckets."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, count in ordered:
        if count >= rank:
            if math.isinf(upper):
                return lower
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


def summarize(text: str) -> Stats:
    """Aggregate the metrics text into the numbers ``quorum stats`` prints."""
    stats = Stats()
    model_buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    total_buckets: dict[float, float] = defaultdict(float)
    agreement: dict[float, float] = defaultdict(float)

    def model(name: str) -> ModelStats:
        return stats.models.setdefault(name, ModelStats())

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            name, labels, value = s.name, s.labels, float(s.value)
            if name == "quorum_requests_total":
                code = labels.get("code", "")
                stats.requests[code] = stats.requests.get(code, 0.0) + value
                tenant = labels.get("tenant", "")
                stats.requests_by_tenant[tenant] = stats.requests_by_tenant.get(tenant, 0) + value
                if labels.get("strategy") == "cascade":
                    stats.cascade_requests += value
            elif name == "quorum_upstream_attempts_total":
                if labels.get("outcome") == "skipped":
                    continue
                m = model(labels.get("model", ""))
                m.calls += value
                if labels.get("outcome") == "failed":
                    m.errors += value
            elif name == "quorum_upstream_duration_seconds_bucket":
                bound = float(labels["le"])
                model_buckets[labels.get("model", "")][bound] += value
            elif name == "quorum_request_duration_seconds_bucket":
                if labels.get("stage") == "total":
                    total_buckets[float(labels["le"])] += value
            elif name == "quorum_tokens_total":
                m = model(labels.get("model", ""))
                if labels.get("direction") == "input":
                    m.input_tokens += value
                else:
                    m.output_tokens += value
            elif name == "quorum_cost_usd_total":
                model(labels.get("model", "")).cost_usd += value
                stats.cost_usd += value
            elif name == "quorum_baseline_cost_usd_total":
                stats.baseline_cost_usd += value
            elif name == "quorum_cascade_escalations_total":
                stats.escalations[labels.get("route", "")] = value
            elif name == "quorum_consensus_agreement_bucket":
                agreement[float(labels["le"])] += value
            elif name == "quorum_breaker_state":
                stats.breakers[labels.get("provider", "")] = BREAKER_NAMES.get(
                    int(value), str(value)
                )
            elif name in ("quorum_budget_used_ratio", "quorum_budget_limit_usd"):
                key = f"{labels.get('tenant', '')}/{labels.get('period', '')}"
                slot = "ratio" if name.endswith("ratio") else "limit_usd"
                stats.budgets.setdefault(key, {})[slot] = value
            elif name == "quorum_cache_hits_total":
                stats.cache_hits[labels.get("tenant", "")] = value
            elif name == "quorum_shed_total":
                stats.shed[labels.get("reason", "")] = value
            elif name == "quorum_inflight_requests":
                stats.inflight = value
    for name, buckets in model_buckets.items():
        m = model(name)
        p50, p99 = quantile(0.5, buckets.items()), quantile(0.99, buckets.items())
        m.p50_ms = p50 * 1000 if p50 is not None else None
        m.p99_ms = p99 * 1000 if p99 is not None else None
    p50, p99 = quantile(0.5, total_buckets.items()), quantile(0.99, total_buckets.items())
    stats.total_p50_ms = p50 * 1000 if p50 is not None else None
    stats.total_p99_ms = p99 * 1000 if p99 is not None else None
    stats.agreement_p50 = quantile(0.5, agreement.items())
    return stats


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def render(stats: Stats) -> str:
    """A plain-text report of ``stats``."""
    lines: list[str] = []
    total = sum(stats.requests.values())
    ok = stats.requests.get("OK", 0.0)
    codes = ", ".join(f"{c} {n:.0f}" for c, n in sorted(stats.requests.items()) if c != "OK")
    lines.append(
        f"requests  {total:.0f} ({ok:.0f} ok{', ' + codes if codes else ''}); "
        f"in flight {stats.inflight:.0f}; latency p50 {_ms(stats.total_p50_ms)} ms, "
        f"p99 {_ms(stats.total_p99_ms)} ms"
    )
    saving = 1 - stats.cost_usd / stats.baseline_cost_usd if stats.baseline_cost_usd else 0.0
    lines.append(
        f"cost      ${stats.cost_usd:.6f} against ${stats.baseline_cost_usd:.6f} on the premium "
        f"baseline ({saving:.0%} saved)"
    )
    lines.append("")
    header = f"{'model':<24} {'calls':>7} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8}"
    lines.append(f"{header} {'tokens in/out':>17} {'cost USD':>12}")
    for name, m in sorted(stats.models.items(), key=lambda kv: -kv[1].calls):
        tokens = f"{m.input_tokens:.0f}/{m.output_tokens:.0f}"
        lines.append(
            f"{name:<24} {m.calls:>7.0f} {m.errors:>7.0f} {_ms(m.p50_ms):>8} "
            f"{_ms(m.p99_ms):>8} {tokens:>17} {m.cost_usd:>12.6f}"
        )
    if stats.escalations or stats.cascade_requests:
        lines.append("")
        rate = sum(stats.escalations.values()) / stats.cascade_requests
        lines.append(
            f"cascades  {stats.cascade_requests:.0f} requests, escalation rate {rate:.0%}"
            if stats.cascade_requests
            else "cascades"
        )
        for route, n in sorted(stats.escalations.items()):
            lines.append(f"  {route:<30} {n:.0f} escalations")
    if stats.agreement_p50 is not None:
        lines.append(f"consensus median agreement {stats.agreement_p50:.2f}")
    if stats.breakers:
        lines.append("")
        lines.append(
            "breakers  " + ", ".join(f"{p} {s}" for p, s in sorted(stats.breakers.items()))
        )
    if stats.budgets:
        lines.append("budgets")
        for key, b in sorted(stats.budgets.items()):
            ratio, limit = b.get("ratio", 0.0), b.get("limit_usd", 0.0)
            lines.append(f"  {key:<30} {ratio:>6.1%} of ${limit:.2f}")
    if stats.cache_hits:
        lines.append(
            "cache     "
            + ", ".join(f"{t} {n:.0f} hits" for t, n in sorted(stats.cache_hits.items()))
        )
    if stats.shed:
        lines.append(
            "shed      " + ", ".join(f"{r} {n:.0f}" for r, n in sorted(stats.shed.items()))
        )
    return "\n".join(lines)


def as_json(stats: Stats) -> str:
    data: dict[str, Any] = asdict(stats)
    return json.dumps(data, indent=2, sort_keys=True)


def run(address: str, *, json_output: bool = False, timeout_s: float = 5.0) -> tuple[int, str]:
    """Exit code and text for ``quorum stats``."""
    url = metrics_url(address)
    try:
        text = fetch(address, timeout_s)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return 1, f"quorum stats: cannot read {url}: {reason}"
    except http.client.HTTPException as exc:  # e.g. the gRPC port: it does not speak HTTP/1
        return 1, (
            f"quorum stats: cannot read {url}: not an HTTP response ({type(exc).__name__}); "
            "give the server's metrics address (observability.metrics_address), not its gRPC port"
        )
    except ValueError:  # the body is not UTF-8
        return 1, f"quorum stats: {url} did not return Prometheus metrics text"
    try:
        stats = summarize(text)
    except ValueError as exc:
        detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        return 1, f"quorum stats: {url} did not return Prometheus metrics text ({detail})"
    return 0, as_json(stats) if json_output else render(stats)
