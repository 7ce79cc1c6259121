"""Quality/cost curves of routers and the figures read off them.

**Two models.** A router gives every prompt a score; sending the prompts with the highest scores
to the strong model traces a curve from "all weak" (share 0) to "all strong" (share 1). Prompts
with equal scores are one group, crossed linearly (the expectation over random tie-breaking), so
a constant router is exactly the random-routing diagonal. Read off the curve:

* ``share_at(target)``: the smallest share of prompts sent to the strong model whose mean
  quality reaches ``target`` (lower is better), and the mean cost there;
* quality targets: "95%" means 95% of the strong model's mean quality (RouteLLM's headline);
  "80%"/"50%" mean 80%/50% of the *gap* between weak and strong recovered (RouteLLM's
  CPT(80%)/CPT(50%)), since 80% of the strong model's quality is below the weak model's on most
  sources;
* APGR: the area under the performance-gap-recovered curve over the strong share (0.5 for
  random routing, higher is better).

A *cascade* is the same curve with a different cost: the cheap call is paid for every prompt.

**Many models.** A router that picks ``argmax E[m] - lambda * cost_m`` traces, over lambda, a set
of (mean cost, mean quality) operating points; :class:`MultiCurve` holds them and reads the best
quality within a cost budget or the least cost for a quality target.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

OF_STRONG = "of_strong"
OF_GAP = "of_gap"

STANDARD_TARGETS: tuple[tuple[str, float, str], ...] = (
    ("95", 0.95, OF_STRONG),
    ("80", 0.80, OF_GAP),
    ("50", 0.50, OF_GAP),
)
"""The quality targets reported everywhere: (label, level, kind)."""


def target_quality(level: float, kind: str, weak_mean: float, strong_mean: float) -> float:
    """Absolute mean quality for a target: ``level`` of the strong model's or of the gap."""
    if kind == OF_STRONG:
        return level * strong_mean
    if kind == OF_GAP:
        return weak_mean + level * (strong_mean - weak_mean)
    raise ValueError(f"target kind must be {OF_STRONG!r} or {OF_GAP!r}, not {kind!r}")


def fraction_of(value: float, whole: float) -> float:
    """``value / whole``, or NaN (undefined) when ``whole`` is not a positive number: e.g. a
    cost relative to a premium model that costs nothing has no meaning."""
    return value / whole if whole > 0 and np.isfinite(whole) else float("nan")


@dataclass(frozen=True)
class RoutingCurve:
    """Quality and cost of a threshold router at each tie-group boundary (share ascending)."""

    shares: FloatArray
    quality: FloatArray
    cost: FloatArray
    thresholds: FloatArray

    def _crossing(self, target: float) -> tuple[int, float] | None:
        hits = np.nonzero(self.quality >= target - 1e-12)[0]
        if hits.size == 0:
            return None
        j = int(hits[0])
        if j == 0:
            return 0, 0.0
        q0, q1 = self.quality[j - 1], self.quality[j]
        frac = float((target - q0) / (q1 - q0)) if q1 > q0 else 1.0
        return j, min(1.0, max(0.0, frac))

    def share_at(self, target: float) -> float:
        """Smallest strong share reaching mean quality ``target`` (NaN if unreachable)."""
        hit = self._crossing(target)
        if hit is None:
            return float("nan")
        j, f = hit
        if j == 0:
            return 0.0
        return float(self.shares[j - 1] + f * (self.shares[j] - self.shares[j - 1]))

    def cost_at(self, target: float) -> float:
        """Mean cost per prompt at :meth:`share_at` (NaN if unreachable)."""
        hit = self._crossing(target)
        if hit is None:
            return float("nan")
        j, f = hit
        if j == 0:
            return float(self.cost[0])
        return float(self.cost[j - 1] + f * (self.cost[j] - self.cost[j - 1]))

    def threshold_at(self, target: float) -> float:
        """Score threshold (route if score >= it) that reaches ``target``; +inf if none needed."""
        hit = self._crossing(target)
        if hit is None:
            return float(self.thresholds[-1])
        j, _ = hit
        return float(self.thresholds[j])

    def at_threshold(self, threshold: float, scores: FloatArray) -> tuple[float, float, float]:
        """(share, quality, cost) when routing prompts with ``score >= threshold``."""
        share = float(np.mean(scores >= threshold))
        j = int(np.searchsorted(self.shares, share - 1e-12))
        j = min(j, len(self.shares) - 1)
        return share, float(self.quality[j]), float(self.cost[j])

    def apgr(self) -> float:
        """Area under the gap-recovered curve over the strong share."""
        q0, q1 = self.quality[0], self.quality[-1]
        if q1 == q0:
            return float("nan")
        pgr = (self.quality - q0) / (q1 - q0)
        return float(np.sum(np.diff(self.shares) * (pgr[1:] + pgr[:-1]) / 2.0))


def routing_curve(
    scores: FloatArray,
    weak_quality: FloatArray,
    strong_quality: FloatArray,
    weak_cost: FloatArray,
    strong_cost: FloatArray,
    *,
    cascade: bool = False,
) -> RoutingCurve:
    """The curve of routing the highest-scoring prompts to the strong model first.

    With ``cascade`` the weak call is paid for on every prompt (escalation adds the strong
    call); otherwise a routed prompt costs the strong call instead of the weak one.
    """
    n = len(scores)
    if n == 0:
        raise ValueError("no prompts to build a curve from")
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    gain = (strong_quality - weak_quality)[order]
    added = (strong_cost if cascade else strong_cost - weak_cost)[order]
    # boundaries: after each group of equal scores
    ends = np.nonzero(np.append(s[1:] != s[:-1], True))[0] + 1
    cum_gain = np.concatenate([[0.0], np.cumsum(gain)[ends - 1]])
    cum_cost = np.concatenate([[0.0], np.cumsum(added)[ends - 1]])
    shares = np.concatenate([[0.0], ends / n])
    thresholds = np.concatenate([[np.inf], s[ends - 1]])
    return RoutingCurve(
        shares=shares,
        quality=float(np.mean(weak_quality)) + cum_gain / n,
        cost=float(np.mean(weak_cost)) + cum_cost / n,
        thresholds=thresholds,
    )


def bootstrap_se(
    statistic: Callable[[IntArray], float], n: int, rounds: int = 200, seed: int = 0
) -> float:
    """Standard error of ``statistic(rows)`` over bootstrap resamples of ``n`` rows."""
    rng = np.random.default_rng(seed)
    values = [statistic(rng.integers(0, n, n)) for _ in range(rounds)]
    finite = [v for v in values if np.isfinite(v)]
    return float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan")


def lambda_grid(reference_cost: float, points: int = 160) -> FloatArray:
    """Lambdas (quality per dollar) from "quality only" (0) to "cost only" (very large)."""
    scale = 1.0 / max(reference_cost, 1e-12)
    return np.concatenate([[0.0], np.geomspace(1e-3, 1e3, points) * scale, [1e9 * scale]])


def refine_lambdas(
    lams: FloatArray, values: FloatArray, target: float, points: int = 48
) -> FloatArray:
    """``lams`` plus ``points`` more between each pair of neighbours where ``values`` crosses
    ``target``.

    ``values`` is a per-lambda figure of the operating points (mean cost, mean quality). Adjacent
    lambdas of :func:`lambda_grid` are 9% apart, and one step can move many prompts to another
    model at once; refining where the figure crosses its target lets the router (and its
    evaluation) find the operating point that meets a budget or a quality target closely,
    instead of the nearest coarse step on the safe side.
    """
    lams = np.asarray(lams, dtype=np.float64)
    above = np.asarray(values) >= target
    extra = []
    for i in np.nonzero(above[1:] != above[:-1])[0]:
        lo, hi = float(lams[i]), float(lams[i + 1])
        if lo > 0 and hi > 0:
            extra.append(np.geomspace(lo, hi, points + 2)[1:-1])
        else:
            extra.append(np.linspace(lo, hi, points + 2)[1:-1])
    return np.unique(np.concatenate([lams, *extra])) if extra else lams


def choose_models(expected: FloatArray, est_cost: FloatArray, lam: float) -> IntArray:
    """Per prompt, the model maximising ``expected - lam * est_cost``."""
    return np.asarray(np.argmax(expected - lam * est_cost, axis=1), dtype=np.intp)


@dataclass(frozen=True)
class MultiCurve:
    """Per-lambda chosen quality and cost of every prompt (``(lambdas, rows)`` arrays)."""

    lams: FloatArray
    row_quality: FloatArray
    row_cost: FloatArray
    row_premium: FloatArray

    def points(self, rows: IntArray | None = None) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Mean quality, mean cost and premium share per lambda (over ``rows`` if given)."""
        q, c, p = self.row_quality, self.row_cost, self.row_premium
        if rows is not None:
            q, c, p = q[:, rows], c[:, rows], p[:, rows]
        return q.mean(axis=1), c.mean(axis=1), p.mean(axis=1)

    def best_quality_within(self, budget: float, rows: IntArray | None = None) -> float:
        """Best mean quality of an operating point costing at most ``budget`` a prompt."""
        q, c, _ = self.points(rows)
        ok = c <= budget + 1e-15
        return float(q[ok].max()) if ok.any() else float("nan")

    def cheapest_reaching(self, target: float, rows: IntArray | None = None) -> int | None:
        """Index of the cheapest operating point with mean quality >= ``target``."""
        q, c, _ = self.points(rows)
        ok = np.nonzero(q >= target - 1e-12)[0]
        if ok.size == 0:
            return None
        return int(ok[np.argmin(c[ok])])


def multi_curve(
    expected: FloatArray,
    est_cost: FloatArray,
    quality: FloatArray,
    cost: FloatArray,
    lams: FloatArray,
) -> MultiCurve:
    """Operating points of the lambda router over ``lams``; the premium is the last model."""
    n, k = quality.shape
    idx = np.arange(n)
    rq = np.zeros((len(lams), n))
    rc = np.zeros((len(lams), n))
    rp = np.zeros((len(lams), n))
    for i, lam in enumerate(lams):
        pick = choose_models(expected, est_cost, float(lam))
        rq[i] = quality[idx, pick]
        rc[i] = cost[idx, pick]
        rp[i] = pick == k - 1
    return MultiCurve(
        lams=np.asarray(lams, dtype=np.float64), row_quality=rq, row_cost=rc, row_premium=rp
    )


def pareto_apgr(
    q: FloatArray, c: FloatArray, cheap_q: float, premium_q: float, premium_cost: float
) -> float:
    """Area under the best gap recovered within each cost fraction 0..1 of the premium."""
    if premium_q == cheap_q or premium_cost <= 0:
        return float("nan")
    xs = np.linspace(0.0, 1.0, 201)
    frac = c / premium_cost
    pgr = (q - cheap_q) / (premium_q - cheap_q)
    best = np.array([pgr[frac <= x + 1e-12].max(initial=0.0) for x in xs])
    return float(np.trapezoid(np.clip(best, 0.0, None), xs))
