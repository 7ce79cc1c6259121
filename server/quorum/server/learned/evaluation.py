"""Judging a router on rows it has not seen: per source, its curve and the headline figures.

``evaluate`` scores every row with the numpy router (exactly as served), then reads the curves of
:mod:`.metrics`. Standard errors come from bootstrap resamples of the rows with the router's
scores held fixed (they measure the evaluation set's noise, not the training's).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from quorum.server.learned.data import (
    DataError,
    Price,
    RoutingRow,
    SourceTable,
    build_table,
    split_by_source,
)
from quorum.server.learned.heads import PAIR, SourceHead
from quorum.server.learned.metrics import (
    OF_GAP,
    OF_STRONG,
    STANDARD_TARGETS,
    MultiCurve,
    RoutingCurve,
    bootstrap_se,
    fraction_of,
    lambda_grid,
    multi_curve,
    pareto_apgr,
    refine_lambdas,
    routing_curve,
    target_quality,
)
from quorum.server.learned.router import LearnedRouter

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

CURVE_POINTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass
class SourceReport:
    """Figures for one source; ``figures`` is what ``--json`` prints for it."""

    source: str
    kind: str
    models: tuple[str, ...]
    figures: dict[str, Any]
    curve_table: list[dict[str, float]]
    plot: dict[str, Any] = field(default_factory=dict)


def find_head(router: LearnedRouter, source: str, rows: Sequence[RoutingRow]) -> SourceHead | None:
    """The head to judge a source's rows with, chosen before any row is priced.

    The head trained on this source (by name); else, among the heads whose models all answer
    at least one row together, the one whose models are exactly the models answering the
    source's rows, else the one with the most such rows (ties: more models, then a head with a
    cascade verifier when those rows carry its cheap model's answers — the pool's cascade is
    what such rows are for, and only that head can judge it —, then the artifact's order).
    Models of the rows that the head does not use play no part. None: no head fits.
    """
    if source in router.heads:
        return router.heads[source]
    answered = {m for r in rows for m in r.results}
    best: tuple[bool, int, int, bool] | None = None
    chosen: SourceHead | None = None
    for head in router.heads.values():
        usable = _usable_rows(rows, head)
        rank = (
            set(head.models) == answered,
            len(usable),
            len(head.models),
            head.cascade is not None and _carry_cheap_answers(usable, head),
        )
        if rank[1] and (best is None or rank > best):
            best, chosen = rank, head
    return chosen


def _carry_cheap_answers(rows: Sequence[RoutingRow], head: SourceHead) -> bool:
    """Whether most ``rows`` carry the head's cheap model's answer (as
    :attr:`~.data.SourceTable.has_cheap_responses` asks before judging a cascade)."""
    cheap = head.models[0]
    have = sum(1 for r in rows if r.results[cheap].response)
    return have >= 0.9 * max(1, len(rows))


def _usable_rows(rows: Sequence[RoutingRow], head: SourceHead) -> list[RoutingRow]:
    """The rows that carry a result for every model of ``head`` (the models compared)."""
    return [r for r in rows if all(m in r.results for m in head.models)]


def _se(stat: Any, n: int, rounds: int, value: float) -> float:
    """Bootstrap SE of ``stat``; undefined (NaN) when the figure itself, ``value``, is."""
    if rounds <= 0 or not np.isfinite(value):
        return float("nan")
    return bootstrap_se(stat, n, rounds)


def _pair_figures(
    prefix: str, scores: FloatArray, t: SourceTable, cascade: bool, rounds: int
) -> tuple[dict[str, float], RoutingCurve]:
    q, c = t.scores, t.costs

    def curve_of(rows: IntArray | None) -> RoutingCurve:
        idx = np.arange(len(scores)) if rows is None else rows
        return routing_curve(
            scores[idx], q[idx, 0], q[idx, 1], c[idx, 0], c[idx, 1], cascade=cascade
        )

    def share(level: float, kind: str, rows: IntArray | None) -> float:
        idx = np.arange(len(scores)) if rows is None else rows
        weak, strong = float(q[idx, 0].mean()), float(q[idx, 1].mean())
        return curve_of(rows).share_at(target_quality(level, kind, weak, strong))

    def saved(rows: IntArray | None) -> float:
        idx = np.arange(len(scores)) if rows is None else rows
        strong = float(q[idx, 1].mean())
        cost = curve_of(rows).cost_at(target_quality(0.95, OF_STRONG, 0.0, strong))
        return 1.0 - fraction_of(cost, float(c[idx, 1].mean()))

    n = len(scores)
    out: dict[str, float] = {}
    for label, level, kind in STANDARD_TARGETS:
        value = out[f"{prefix}strong_share_at_{label}"] = share(level, kind, None)
        out[f"{prefix}strong_share_at_{label}_se"] = _se(
            lambda r, lv=level, kd=kind: share(lv, kd, r), n, rounds, value
        )
    value = out[f"{prefix}cost_saved_at_95"] = saved(None)
    out[f"{prefix}cost_saved_at_95_se"] = _se(saved, n, rounds, value)
    value = out[f"{prefix}apgr"] = curve_of(None).apgr()
    out[f"{prefix}apgr_se"] = _se(lambda r: curve_of(r).apgr(), n, rounds, value)
    return out, curve_of(None)


def evaluate_pair(head: SourceHead, t: SourceTable, rounds: int) -> SourceReport:
    """Curve and figures of a two-model source (and of its cascade where answers exist)."""
    expected = np.array([head.expected_scores(p) for p in t.prompts])
    gain = expected[:, 1] - expected[:, 0]
    figures: dict[str, Any] = {"n": len(t.prompts), "models": list(t.models)}
    fig, curve = _pair_figures("", gain, t, cascade=False, rounds=rounds)
    figures.update(fig)
    q, c = t.scores, t.costs
    weak, strong = float(q[:, 0].mean()), float(q[:, 1].mean())
    figures["weak_quality"], figures["strong_quality"] = weak, strong
    oracle = routing_curve(q[:, 1] - q[:, 0], q[:, 0], q[:, 1], c[:, 0], c[:, 1])
    t95 = target_quality(0.95, OF_STRONG, weak, strong)
    figures["random_strong_share_at_95"] = (
        max(0.0, (t95 - weak) / (strong - weak)) if strong > weak else 0.0
    )
    figures["oracle_strong_share_at_95"] = oracle.share_at(t95)
    if head.threshold is not None:
        share, quality, cost = curve.at_threshold(head.threshold, gain)
        figures["calibrated"] = {
            "threshold": head.threshold,
            "strong_share": share,
            "quality_fraction_of_strong": quality / strong if strong else float("nan"),
            "cost_fraction": fraction_of(cost, float(c[:, 1].mean())),
        }
    plot: dict[str, Any] = {
        "router": (curve.shares, curve.quality),
        "oracle": (oracle.shares, oracle.quality),
        "random": ((0.0, 1.0), (weak, strong)),
        "target": t95,
        "xlabel": f"share sent to {t.models[1]}",
    }
    if head.cascade is not None and sum(1 for r in t.responses if r) >= 0.9 * len(t.responses):
        cgain = np.array(
            [head.cascade_gain(p, r) for p, r in zip(t.prompts, t.responses, strict=True)]
        )
        cfig, ccurve = _pair_figures("cascade_", cgain, t, cascade=True, rounds=rounds)
        figures.update(cfig)
        plot["cascade"] = (ccurve.shares, ccurve.quality)
    table = []
    for x in CURVE_POINTS:
        j = int(np.searchsorted(curve.shares, x - 1e-12))
        j = min(j, len(curve.shares) - 1)
        table.append(
            {
                "strong_share": float(curve.shares[j]),
                "quality": float(curve.quality[j]),
                "cost_fraction": fraction_of(float(curve.cost[j]), float(c[:, 1].mean())),
            }
        )
    return SourceReport(t.source, PAIR, t.models, figures, table, plot)


def _multi_stats(curve: MultiCurve, t: SourceTable, rows: IntArray | None) -> dict[str, float]:
    idx = np.arange(len(t.prompts)) if rows is None else rows
    q, c = t.scores[idx], t.costs[idx]
    premium_q, premium_c = float(q[:, -1].mean()), float(c[:, -1].mean())
    cheap_q = float(q[:, 0].mean())
    qs, cs, ps = curve.points(rows)
    out = {"score_at_half_cost": curve.best_quality_within(0.5 * premium_c, rows)}
    for label, level, kind in STANDARD_TARGETS:
        i = curve.cheapest_reaching(target_quality(level, kind, cheap_q, premium_q), rows)
        out[f"strong_share_at_{label}"] = float(ps[i]) if i is not None else float("nan")
        if label == "95":
            out["cost_saved_at_95"] = (
                1.0 - fraction_of(float(cs[i]), premium_c) if i is not None else float("nan")
            )
    out["apgr"] = pareto_apgr(qs, cs, cheap_q, premium_q, premium_c)
    return out


def evaluate_multi(head: SourceHead, t: SourceTable, rounds: int) -> SourceReport:
    """Operating points of a many-model source, its chosen point and the headline figures."""
    expected = np.array([head.expected_scores(p) for p in t.prompts])
    est_cost = np.array([head.cost.estimate(p) for p in t.prompts])
    lams = lambda_grid(float(np.median(est_cost[:, -1])))
    curve = multi_curve(expected, est_cost, t.scores, t.costs, lams)
    half_cost = 0.5 * float(t.costs[:, -1].mean())
    lams = refine_lambdas(lams, curve.points()[1], half_cost)
    if head.lam is not None:
        lams = np.unique(np.append(lams, head.lam))
    curve = multi_curve(expected, est_cost, t.scores, t.costs, lams)
    n = len(t.prompts)
    figures: dict[str, Any] = {"n": n, "models": list(t.models), "premium": t.models[-1]}
    stats = _multi_stats(curve, t, None)
    for key, value in stats.items():
        figures[key] = value
        figures[f"{key}_se"] = _se(lambda r, k=key: _multi_stats(curve, t, r)[k], n, rounds, value)
    premium_q, premium_c = float(t.scores[:, -1].mean()), float(t.costs[:, -1].mean())
    figures["premium_quality"], figures["premium_cost_usd"] = premium_q, premium_c
    qs, cs, ps = curve.points()
    if head.lam is not None:
        i = int(np.nonzero(lams == head.lam)[0][0])
        figures["cost_fraction"] = fraction_of(float(cs[i]), premium_c)
        figures["score_at_calibrated"] = float(qs[i])
        figures["calibrated"] = {"lambda": head.lam, "premium_share": float(ps[i])}
        boot = lambda r: fraction_of(  # noqa: E731
            float(curve.points(r)[1][i]), float(t.costs[r, -1].mean())
        )
        figures["cost_fraction_se"] = _se(boot, n, rounds, figures["cost_fraction"])
    noise = 1e-9 * np.arange(len(t.models))[None, :]
    oracle = multi_curve(t.scores - noise, t.costs, t.scores, t.costs, lambda_grid(premium_c))
    oq, oc, _ = oracle.points()
    table = []
    order = np.argsort(cs)
    for frac in (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0):
        ok = order[cs[order] <= frac * premium_c + 1e-15]
        best = float(qs[ok].max()) if ok.size else float("nan")
        table.append({"cost_fraction": frac, "quality": best})
    # cost on the x axis: a fraction of the premium's, or dollars when the premium costs nothing
    scale = premium_c if premium_c > 0 else 1.0
    singles = {
        m: (float(t.costs[:, j].mean()) / scale, float(t.scores[:, j].mean()))
        for j, m in enumerate(t.models)
    }
    plot = {
        "router": (cs / scale, qs),
        "oracle": (oc / scale, oq),
        "singles": singles,
        "target": 0.95 * premium_q,
        "xlabel": f"cost as a fraction of always {t.models[-1]}"
        if premium_c > 0
        else f"mean cost a prompt, US dollars ({t.models[-1]} costs $0 here)",
        "x_is_fraction": premium_c > 0,
    }
    return SourceReport(t.source, "multi", t.models, figures, table, plot)


def evaluate(
    router: LearnedRouter,
    rows: Sequence[RoutingRow],
    prices: Mapping[str, Price],
    *,
    rounds: int = 200,
) -> dict[str, SourceReport]:
    """Reports for every source of ``rows`` that the router has a head for.

    The head is chosen first (:func:`find_head`: by source name, else by its models); then only
    the rows with a result for every model of that head are kept (``n`` counts them) and only
    the head's models are priced. A source with no fitting head, no such rows or a head model
    that cannot be priced is skipped with a note on stderr saying why; the others are evaluated.
    """
    reports: dict[str, SourceReport] = {}
    for source, source_rows in split_by_source(rows).items():
        head = find_head(router, source, source_rows)
        if head is None:
            _note(
                f"source {source!r}: no head of the router fits (none is named so, and no row "
                "has a result for every model of a head); skipped"
            )
            continue
        usable = _usable_rows(source_rows, head)
        if not usable:
            _note(
                f"source {source!r}: no row has a result for every model of head "
                f"{head.source!r} ({', '.join(head.models)}); skipped"
            )
            continue
        try:  # prices only the head's models: other models of the rows play no part
            table = build_table(usable, prices, head.models)
        except DataError as exc:
            _note(f"source {source!r} (head {head.source!r}): {exc}; skipped")
            continue
        if not float(table.costs[:, -1].mean()) > 0:
            _note(
                f"source {source!r}: {table.premium} costs $0 on these rows; figures relative "
                "to its cost (cost saved, cost fractions) are undefined (n/a; null in --json)"
            )
        if head.kind == PAIR:
            reports[source] = evaluate_pair(head, table, rounds)
        else:
            reports[source] = evaluate_multi(head, table, rounds)
        if len(usable) < len(source_rows):
            left = len(source_rows) - len(usable)
            _note(
                f"source {source!r}: {left} of {len(source_rows)} rows lack a result for a "
                f"model of head {head.source!r}; left out"
            )
    return reports


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


_JSON_KEYS = (
    "n",
    "strong_share_at_95",
    "cost_saved_at_95",
    "strong_share_at_80",
    "strong_share_at_50",
    "apgr",
    "cascade_strong_share_at_95",
    "cascade_strong_share_at_50",
    "cascade_strong_share_at_80",
    "cascade_cost_saved_at_95",
    "cascade_apgr",
    "score_at_half_cost",
    "cost_fraction",
    "score_at_calibrated",
)


def json_summary(reports: Mapping[str, SourceReport]) -> dict[str, dict[str, Any]]:
    """One JSON-ready object keyed by source: headline figures, their SEs, and details."""
    out: dict[str, dict[str, Any]] = {}
    for source, rep in reports.items():
        f = rep.figures
        entry: dict[str, Any] = {"kind": rep.kind}
        for key in _JSON_KEYS:
            if key in f:
                entry[key] = _clean(f[key])
                if f"{key}_se" in f:
                    entry[f"{key}_se"] = _clean(f[f"{key}_se"])
        for key in (
            "models",
            "calibrated",
            "random_strong_share_at_95",
            "oracle_strong_share_at_95",
        ):
            if key in f:
                entry[key] = _clean(f[key])
        out[source] = entry
    return out


def _clean(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        v = float(value)
        return None if not np.isfinite(v) else round(v, 6)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


__all__ = ["OF_GAP", "SourceReport", "evaluate", "json_summary"]
