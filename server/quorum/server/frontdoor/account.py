"""Quorum's account of a request, as JSON and as response headers.

The account (which models were tried and why, the plan's reasons, the classification,
cost and the saving against the baseline) travels in the ``quorum`` extension field of
a response body and, in short, in ``x-quorum-*`` headers. Domain values are turned into
JSON generically — dataclasses become objects, enums their lower-case names, tuples
lists — so a field added to the domain appears here without further work.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from quorum.server.domain import Attempt, ExecutionPlan, RouteResult


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data."""
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, frozenset | set):
        return sorted(plain(v) for v in value)
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return value


def attempt_json(attempt: Attempt) -> dict[str, Any]:
    result: dict[str, Any] = plain(attempt)
    return result


def plan_json(plan: ExecutionPlan) -> dict[str, Any]:
    result: dict[str, Any] = plain(plan)
    return result


def account_json(result: RouteResult) -> dict[str, Any]:
    """The ``quorum`` extension field: everything but the answer itself."""
    account: dict[str, Any] = plain(result)
    completion = account.pop("completion")
    account["finish_reason"] = completion["finish_reason"]
    account["mean_logprob"] = completion["mean_logprob"]
    account["answer_usage"] = completion["usage"]
    account["saving_usd"] = result.baseline_cost_usd - result.cost_usd
    return account


def _usd(value: float) -> str:
    return f"{value:.10f}".rstrip("0").rstrip(".") or "0"


def route_headers(request_id: str, *, strategy: str = "", model: str = "") -> dict[str, str]:
    """Headers known before the answer is complete (all a stream can carry)."""
    headers = {"x-request-id": request_id, "x-quorum-request-id": request_id}
    if model:
        headers["x-quorum-model"] = model
    if strategy:
        headers["x-quorum-strategy"] = strategy
    return headers


def result_headers(result: RouteResult, tier: str) -> dict[str, str]:
    """The account in short, for a unary response."""
    headers = route_headers(result.request_id, strategy=plain(result.strategy), model=result.model)
    headers.update(
        {
            "x-quorum-provider": result.provider,
            "x-quorum-tier": tier,
            "x-quorum-cost-usd": _usd(result.cost_usd),
            "x-quorum-baseline-cost-usd": _usd(result.baseline_cost_usd),
            "x-quorum-baseline-model": result.baseline_model,
            "x-quorum-attempts": str(len(result.attempts)),
            "x-quorum-task": result.classification.task,
            "x-quorum-difficulty": plain(result.classification.difficulty),
            "x-quorum-total-ms": f"{result.timings.total_ms:.1f}",
        }
    )
    if result.simulated:
        headers["x-quorum-simulated"] = "true"
    return headers
