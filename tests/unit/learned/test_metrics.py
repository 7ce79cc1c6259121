"""Curves and figures on hand-made tables whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from quorum.server.learned.metrics import (
    OF_GAP,
    OF_STRONG,
    RoutingCurve,
    lambda_grid,
    multi_curve,
    pareto_apgr,
    refine_lambdas,
    routing_curve,
    target_quality,
)

# Ten prompts: the weak model is right on 6, the strong on 8; prompts 0 and 1 are the only
# ones where the strong model wins (a perfect router sends just those two).
WEAK = np.array([0, 0, 1, 1, 1, 1, 1, 1, 0, 0], dtype=float)
STRONG = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], dtype=float)
WEAK_COST = np.full(10, 1.0)
STRONG_COST = np.full(10, 10.0)


def curve(scores: npt.NDArray[np.float64], cascade: bool = False) -> RoutingCurve:
    return routing_curve(scores, WEAK, STRONG, WEAK_COST, STRONG_COST, cascade=cascade)


def test_targets() -> None:
    assert target_quality(0.95, OF_STRONG, 0.6, 0.8) == pytest.approx(0.76)
    assert target_quality(0.5, OF_GAP, 0.6, 0.8) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="target kind"):
        target_quality(0.5, "nonsense", 0.6, 0.8)


def test_oracle_router_needs_only_the_winning_prompts() -> None:
    oracle = curve(STRONG - WEAK)
    assert oracle.share_at(0.8) == pytest.approx(0.2)  # full strong quality with 2 of 10
    assert oracle.share_at(0.7) == pytest.approx(0.1)
    assert oracle.cost_at(0.8) == pytest.approx(0.8 * 1 + 0.2 * 10)
    assert oracle.share_at(0.5) == 0.0  # the weak model alone already reaches it


def test_constant_router_is_random_routing() -> None:
    flat = curve(np.zeros(10))
    # quality rises linearly from 0.6 to 0.8: 0.76 needs 80% of the prompts
    assert flat.share_at(0.76) == pytest.approx(0.8)
    assert flat.apgr() == pytest.approx(0.5)
    assert curve(STRONG - WEAK).apgr() == pytest.approx(0.9)


def test_worst_router_routes_winners_last() -> None:
    worst = curve(-(STRONG - WEAK))
    assert worst.share_at(0.8) == pytest.approx(1.0)
    assert worst.apgr() == pytest.approx(0.1)


def test_cascade_pays_the_cheap_call_always() -> None:
    cascade = curve(STRONG - WEAK, cascade=True)
    assert cascade.share_at(0.8) == pytest.approx(0.2)
    assert cascade.cost_at(0.8) == pytest.approx(1.0 + 0.2 * 10)


def test_threshold_reaches_the_target() -> None:
    scores = np.linspace(1.0, 0.0, 10)  # prompt 0 highest
    c = curve(scores)
    t = c.threshold_at(0.7)
    share, quality, _ = c.at_threshold(t, scores)
    assert share == pytest.approx(0.1) and quality >= 0.7


def test_unreachable_target_is_nan() -> None:
    assert math.isnan(curve(np.zeros(10)).share_at(0.99))


def test_multi_curve_reads_budgets_and_targets() -> None:
    # two prompts, three models (cheap, mid, premium); quality per model and cost per model
    quality = np.array([[0, 1, 1], [1, 1, 1]], dtype=float)
    cost = np.array([[1, 2, 10], [1, 2, 10]], dtype=float)
    expected = quality.copy()
    lams = lambda_grid(10.0)
    mc = multi_curve(expected, cost, quality, cost, lams)
    assert mc.best_quality_within(1.5) == pytest.approx(1.0)  # mid for 0, cheap for 1
    assert mc.best_quality_within(1.0) == pytest.approx(0.5)
    i = mc.cheapest_reaching(1.0)
    assert i is not None
    q, c, p = mc.points()
    assert c[i] == pytest.approx(1.5) and p[i] == 0.0
    assert mc.cheapest_reaching(1.01) is None
    assert pareto_apgr(q, c, 0.5, 1.0, 10.0) > 0.8


def test_refine_lambdas_adds_points_where_the_figure_crosses_its_target() -> None:
    lams = np.array([0.0, 1.0, 2.0, 4.0])
    cost = np.array([9.0, 7.0, 3.0, 1.0])  # falls as lambda grows
    refined = refine_lambdas(lams, cost, 5.0, points=3)
    assert len(refined) == 7 and set(lams) <= set(refined)
    assert np.all((refined[2:5] > 1.0) & (refined[2:5] < 2.0))
    assert np.all(np.diff(refined) > 0)
    np.testing.assert_array_equal(refine_lambdas(lams, cost, 100.0), lams)  # never crossed
    assert len(refine_lambdas(lams, np.array([9.0, 1.0, 9.0, 1.0]), 5.0, points=2)) == 10
