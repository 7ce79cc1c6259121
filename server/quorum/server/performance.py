"""Performance-based ordering of a tier's models: pure, for the planner.

Within a tier, models are ordered by what has been observed of them on the request's
task (from the state snapshot): their answer quality (gate passes, consensus agreement
and caller feedback), the latency of their answers and what an answer cost — the last
two exponentially weighted averages. The request's effective priority says how these
combine:

* quality — by quality, best first (the cheaper model first on a tie), as ever;
* latency — by latency, fastest first, among the models whose quality is within
  ``quality_margin`` (0.10) of the tier's best; the others follow, by quality. Being
  fast does not make up for answers that are clearly worse. Latencies within 10% (and
  20 ms) of each other count as equal, and quality, then price, decide between them;
* cost — the same with the cost of an answer, cheapest first (within 10%: equal);
* balanced — by quality less two small penalties, each relative to the tier:
  ``latency_weight`` (0.05) × latency ÷ the slowest model's (at least 1 s, so a few
  milliseconds weigh nothing), and ``cost_weight`` (0.05) × cost ÷ the dearest model's.
  Quality leads; speed and price settle what is close.

Cold start: a model not yet measured has its configured quality prior; for cost, its
price-based estimate for this request (scaled by how the tier's measured models'
actual costs compare with their own estimates, when some are measured). There is no
latency prior: under balanced priority an unmeasured model counts as the average of the
measured ones (no preference; when none is measured, latency decides nothing); under
latency priority it is tried before the measured ones (still only within the quality
margin), since its latency is what is unknown, and judged once it has answered
``latency_cost_min_samples`` times (3) — so a new or a faster model is found without
exploration, at the price of a few answers from a model that may prove slow.

A small share of requests — chosen by a hash of the request id, so the planner stays
pure and the choice reproducible — explores instead: each model's quality is drawn from
a Beta distribution around its estimate (Thompson sampling) and the tier is ordered by
that draw alone, whatever the priority, so new and drifting models get traffic and all
of their figures — quality, latency and cost — get re-measured.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from quorum.server.catalog import Catalog, ModelSpec
from quorum.server.domain import Priority
from quorum.server.hashing import fraction
from quorum.server.state import StateSnapshot, accuracy_key
from quorum.server.values import value_type

PRIOR_STRENGTH = 10.0  # pseudo-observations behind a configured prior
# Tokens behind a cost prior when the caller gives no estimate for the request: a
# thousand at the blended price's mix (1 part input, 3 parts output).
_PRIOR_INPUT_TOKENS, _PRIOR_OUTPUT_TOKENS = 250, 750
# Latency or cost priority: figures within 10% of each other count as equal (latencies
# also within 20 ms), so noise between like models does not override quality and price.
FIGURE_TOLERANCE = 0.10
LATENCY_SLACK_MS = 20.0
# Balanced priority: latency is taken relative to the tier's slowest model, but at least
# to this, so that a few milliseconds between fast models weigh next to nothing.
LATENCY_SCALE_MS = 1000.0


@value_type
class PerformancePolicy:
    enabled: bool = True
    explore_share: float = 0.0
    min_samples: int = 20
    # How much worse than the tier's best a model's quality may be and still be ordered
    # by latency (latency priority) or cost (cost priority).
    quality_margin: float = 0.10
    # Balanced priority: the most latency, and cost, may take off the quality score.
    latency_weight: float = 0.05
    cost_weight: float = 0.05


@value_type
class Estimate:
    """One model's figures on the task, as the order used them."""

    model: str
    quality: float
    observed: bool
    score: float  # the quality the order used: the estimate, or its Thompson draw
    latency_ms: float | None = None  # None: not measured yet
    cost_usd: float = 0.0  # expected cost of an answer to this request
    cost_observed: bool = False  # False: the price-based prior


def _unit(*parts: str) -> float:
    return fraction("\x1f".join(parts))


def ranked_models(catalog: Catalog) -> frozenset[str]:
    """The models performance routing may reorder: those whose tier has another model."""
    per_tier: dict[str, list[str]] = {}
    for model in catalog.models.values():
        per_tier.setdefault(model.tier, []).append(model.name)
    return frozenset(name for names in per_tier.values() if len(names) > 1 for name in names)


def explores(request_id: str, share: float) -> bool:
    """Whether this request explores (deterministic in the request id)."""
    return share > 0 and _unit("explore", request_id) < share


def estimate(model: ModelSpec, task: str, snapshot: StateSnapshot) -> tuple[float, bool]:
    """Observed quality on ``task`` (gate/feedback, else votes), else the prior."""
    key = accuracy_key(model.name, task)
    for source in (snapshot.model_quality, snapshot.model_accuracy):
        if key in source:
            return source[key], True
    return model.quality_prior, False


def rank(
    models: Sequence[ModelSpec],
    task: str,
    snapshot: StateSnapshot,
    policy: PerformancePolicy,
    request_id: str,
    *,
    priority: Priority = Priority.QUALITY,
    costs: Mapping[str, float] | None = None,
) -> tuple[list[Estimate], bool]:
    """Estimates for ``models``, best first for ``priority``, and whether this request
    explored. ``costs`` are the price-based estimates of an answer to this request, by
    model (the cost priors); without them, a thousand tokens' worth."""
    explore = explores(request_id, policy.explore_share)
    out: list[Estimate] = []
    for model in models:
        quality, observed = estimate(model, task, snapshot)
        score = quality
        if explore:
            strength = float(policy.min_samples) if observed else PRIOR_STRENGTH
            rng = random.Random(f"{request_id}\x1f{model.name}")
            score = rng.betavariate(1.0 + quality * strength, 1.0 + (1.0 - quality) * strength)
        key = accuracy_key(model.name, task)
        cost = snapshot.model_cost_usd.get(key)
        out.append(
            Estimate(
                model.name,
                quality,
                observed,
                score,
                latency_ms=snapshot.model_latency_ms.get(key),
                cost_usd=cost if cost is not None else 0.0,
                cost_observed=cost is not None,
            )
        )
    out = _with_cost_priors(out, models, costs)
    prices = {m.name: m.blended_price for m in models}
    return _ordered(out, Priority.QUALITY if explore else priority, policy, prices), explore


def _with_cost_priors(
    estimates: list[Estimate], models: Sequence[ModelSpec], costs: Mapping[str, float] | None
) -> list[Estimate]:
    """``estimates`` with a cost for the models not yet measured: the price-based
    estimate, times the average ratio of actual to estimated cost of the measured ones."""
    given = costs or {}
    priced = {
        m.name: given[m.name]
        if m.name in given
        else m.estimate_cost(_PRIOR_INPUT_TOKENS, _PRIOR_OUTPUT_TOKENS)
        for m in models
    }
    ratios = [
        e.cost_usd / priced[e.model] for e in estimates if e.cost_observed and priced[e.model]
    ]
    scale = sum(ratios) / len(ratios) if ratios else 1.0
    return [
        e if e.cost_observed else replace(e, cost_usd=priced[e.model] * scale) for e in estimates
    ]


def _ordered(
    estimates: Sequence[Estimate],
    priority: Priority,
    policy: PerformancePolicy,
    prices: Mapping[str, float],
) -> list[Estimate]:
    """A tier's estimates in order under ``priority`` (see the module docstring); ties
    go to the cheaper model, then the name."""
    if not estimates:
        return []

    def by_quality(e: Estimate) -> tuple[float, float, str]:
        return (-e.score, prices[e.model], e.model)

    measured = [e.latency_ms for e in estimates if e.latency_ms is not None]
    neutral = sum(measured) / len(measured) if measured else 0.0

    def latency(e: Estimate) -> float:
        return e.latency_ms if e.latency_ms is not None else neutral

    if priority in (Priority.LATENCY, Priority.COST):
        floor = max(e.score for e in estimates) - policy.quality_margin - 1e-9
        guarded = [e for e in estimates if e.score >= floor]
        rest = sorted((e for e in estimates if e.score < floor), key=by_quality)
        if priority is Priority.LATENCY:
            # Not yet measured: tried first (its latency is what is unknown), until it
            # has answered enough times to be judged.
            untried = [e for e in guarded if e.latency_ms is None]
            tried = [e for e in guarded if e.latency_ms is not None]
            return (
                sorted(untried, key=by_quality)
                + _by_figure(tried, latency, LATENCY_SLACK_MS, by_quality)
                + rest
            )
        return _by_figure(guarded, lambda e: e.cost_usd, 0.0, by_quality) + rest
    if priority is Priority.BALANCED:
        slowest = max(max(latency(e) for e in estimates), LATENCY_SCALE_MS)
        dearest = max(e.cost_usd for e in estimates)

        def blended(e: Estimate) -> tuple[float, float, float, str]:
            value = e.score - policy.latency_weight * latency(e) / slowest
            if dearest > 0:
                value -= policy.cost_weight * e.cost_usd / dearest
            return (-value, *by_quality(e))

        return sorted(estimates, key=blended)
    return sorted(estimates, key=by_quality)


def _by_figure(
    estimates: Sequence[Estimate],
    figure: Callable[[Estimate], float],
    slack: float,
    then: Callable[[Estimate], tuple[float, float, str]],
) -> list[Estimate]:
    """``estimates`` by ``figure``, lowest first; those within ``FIGURE_TOLERANCE`` (and
    ``slack``) of the lowest left count as equal and go by ``then``: a figure that is
    only noisily lower does not override quality and price."""
    left = sorted(estimates, key=lambda e: (figure(e), *then(e)))
    out: list[Estimate] = []
    while left:
        bound = figure(left[0]) * (1.0 + FIGURE_TOLERANCE) + slack
        close = [e for e in left if figure(e) <= bound]
        out.extend(sorted(close, key=then))
        left = [e for e in left if figure(e) > bound]
    return out


def describe(priority: Priority, policy: PerformancePolicy, explored: bool) -> str:
    """How the order was made, for the Plan's PERFORMANCE reason."""
    if explored:
        return "exploring (Thompson sample of quality)"
    margin = f"{policy.quality_margin:.2f}"
    if priority is Priority.LATENCY:
        return f"latency priority, fastest within {margin} of the best quality"
    if priority is Priority.COST:
        return f"cost priority, cheapest within {margin} of the best quality"
    if priority is Priority.BALANCED:
        return (
            f"balanced, quality - {policy.latency_weight:.2f} x latency/slowest"
            f" - {policy.cost_weight:.2f} x cost/dearest"
        )
    return "by observed quality"


def figures(e: Estimate) -> str:
    """One model's figures: quality, latency and cost of an answer, priors marked."""
    quality = f"{e.quality:.2f}{'' if e.observed else ' (prior)'}"
    if e.score != e.quality:  # explored: the order used a Thompson draw
        quality += f" (drawn {e.score:.2f})"
    latency = f"{e.latency_ms:.0f} ms" if e.latency_ms is not None else "latency unmeasured"
    cost = f"${e.cost_usd:.6f}{'' if e.cost_observed else ' (prior)'}"
    return f"{e.model} {quality}, {latency}, {cost}"
